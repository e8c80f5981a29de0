//! The gRPC server of Envoy's `Authorization` service, written out where tonic would generate
//! one (`AuthorizationServer`): the same routing, codec and message bounds, with an answer that
//! may be bytes encoded before ([`Reply`]). An allowed answer depends only on the identity map
//! it was made from and on whether it removes the client's `cookie`, so each worker thread
//! keeps the encoding of the answers it made for a session's (or a verified token's) map and
//! sends those bytes again, where each call built, encoded and dropped the message (with the
//! service written out: 69,067 → 61,885 instructions a call; bench/README.md, batch P).

use std::cell::RefCell;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::HeaderMap;
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse};
use prost::bytes::{Buf, BufMut, Bytes};
use tonic::codegen::{Body, BoxFuture, StdError, http};

use super::{ExtAuthz, MAX_MESSAGE};
use crate::http::memo::{self, Memo};

/// The service's one method.
const CHECK: &str = "/envoy.service.auth.v3.Authorization/Check";

/// A `CheckResponse`: a message, or the encoding of one made earlier.
#[derive(Debug)]
pub(crate) enum Reply {
    /// To encode (boxed: a reply moves through the call's futures).
    Message(Box<CheckResponse>),
    /// Encoded already ([`encoded_allow`]).
    Encoded(Bytes),
}

impl Default for Reply {
    fn default() -> Self {
        Reply::Message(Box::default())
    }
}

/// The codec writes a reply as its message's encoding, or its bytes as they are. A reply is
/// only ever sent, never read.
impl prost::Message for Reply {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match self {
            Reply::Message(m) => m.encode_raw(buf),
            Reply::Encoded(b) => buf.put_slice(b),
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        match self {
            Reply::Message(m) => m.encoded_len(),
            Reply::Encoded(b) => b.len(),
        }
    }

    fn clear(&mut self) {
        *self = Reply::default();
    }
}

/// The gRPC service as the listener serves it.
#[derive(Clone)]
pub(crate) struct Server {
    inner: Arc<ExtAuthz>,
}

impl Server {
    /// Serve `inner`.
    pub(crate) fn new(inner: ExtAuthz) -> Self {
        Server {
            inner: Arc::new(inner),
        }
    }
}

impl<B> tower_service::Service<http::Request<B>> for Server
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != CHECK {
            return Box::pin(async { Ok(tonic::Status::unimplemented("").into_http()) });
        }
        let inner = self.inner.clone();
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<Reply, CheckRequest>::default();
            let mut grpc = tonic::server::Grpc::new(codec)
                .apply_max_message_size_config(Some(MAX_MESSAGE), Some(MAX_MESSAGE));
            Ok(grpc.unary(Check(inner), req).await)
        })
    }
}

/// `Check`, as tonic calls a unary method.
struct Check(Arc<ExtAuthz>);

impl tonic::server::UnaryService<CheckRequest> for Check {
    type Response = Reply;
    type Future = BoxFuture<tonic::Response<Reply>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<CheckRequest>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.check(request).await })
    }
}

thread_local! {
    /// Encoded allowed answers of this worker thread, by the identity map, the server instance
    /// and whether the answer removes `cookie`.
    static ENCODED: RefCell<Memo<HeaderMap, (u64, bool), Bytes>> = RefCell::new(Memo::default());
}

/// The allowed answer for `headers` (a map a session or a token cache keeps, shared), encoded
/// by `make` the first time on this thread and the same bytes afterwards.
pub(super) fn encoded_allow(
    instance: u64,
    headers: &Arc<HeaderMap>,
    removes_cookie: bool,
    make: impl FnOnce() -> CheckResponse,
) -> Reply {
    Reply::Encoded(memo::get_or_make(
        &ENCODED,
        headers,
        (instance, removes_cookie),
        || Bytes::from(prost::Message::encode_to_vec(&make())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::ext_authz::v3::pb::{HttpResponse, OkHttpResponse};
    use prost::Message;

    fn allow(user: &str) -> CheckResponse {
        CheckResponse {
            status: Some(Default::default()),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers_to_remove: vec![user.to_string()],
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn a_reply_is_encoded_as_its_message_is() {
        let m = allow("x-auth-request-groups");
        let expected = m.encode_to_vec();
        assert_eq!(Reply::Message(Box::new(m.clone())).encode_to_vec(), expected);
        assert_eq!(
            Reply::Encoded(Bytes::from(expected.clone())).encode_to_vec(),
            expected
        );
        assert_eq!(
            Reply::Encoded(Bytes::from(expected.clone())).encoded_len(),
            expected.len()
        );
    }

    /// A stale answer must never be sent for another identity: the key is the map's address,
    /// kept from reuse ([`memo`]), with the instance and the cookie case.
    #[test]
    fn identity_confusion_an_encoded_answer_is_reused_only_for_the_same_map_instance_and_cookie_case() {
        let alice = Arc::new(HeaderMap::new());
        let bob = Arc::new(HeaderMap::new());
        let encoded = |r: Reply| match r {
            Reply::Encoded(b) => b,
            Reply::Message(_) => panic!("not encoded"),
        };
        let a = encoded(encoded_allow(7, &alice, true, || allow("alice")));
        assert_eq!(a, allow("alice").encode_to_vec());
        let again = encoded(encoded_allow(7, &alice, true, || panic!("made again")));
        assert_eq!(again, a);
        assert_eq!(
            encoded(encoded_allow(7, &bob, true, || allow("bob"))),
            allow("bob").encode_to_vec()
        );
        assert_eq!(
            encoded(encoded_allow(8, &alice, true, || allow("other instance"))),
            allow("other instance").encode_to_vec()
        );
        assert_eq!(
            encoded(encoded_allow(7, &alice, false, || allow("keeps cookie"))),
            allow("keeps cookie").encode_to_vec()
        );
        // A map dropped while its answer is kept: its address is not given to a new map.
        let weak = Arc::downgrade(&bob);
        drop(bob);
        let carol = Arc::new(HeaderMap::new());
        assert!(!std::ptr::eq(Arc::as_ptr(&carol), weak.as_ptr()));
        assert_eq!(
            encoded(encoded_allow(7, &carol, true, || allow("carol"))),
            allow("carol").encode_to_vec()
        );
    }
}
