//! The gRPC benchmark's baseline: an Envoy ext_authz server (the same protos and tonic server as
//! forwarden's) that allows every `Check` at once.
//! `cargo run --release --example noop_grpc -- 127.0.0.1:4182`

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HttpResponse, OkHttpResponse,
};

struct Allow;

#[tonic::async_trait]
impl Authorization for Allow {
    async fn check(
        &self,
        _: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(CheckResponse {
            status: Some(Default::default()),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse::default())),
            ..Default::default()
        }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:4182".into());
    tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(Allow))
        .serve(addr.parse()?)
        .await?;
    Ok(())
}
