//! Requests of the tests: sent, read as text or JSON, and the answers every test checks alike.

/// `path` on the test app's host `app.test`, at `port` (nginx or forwarden listening there).
pub fn app_at(port: u16, path: &str) -> String {
    format!("http://app.test:{port}{path}")
}

/// GET `url` and read the answer as text.
pub async fn get_text(http: &reqwest::Client, url: &str) -> String {
    http.get(url).sent().await.text().await.unwrap()
}

/// GET `url` and read the answer as JSON.
pub async fn get_json(http: &reqwest::Client, url: &str) -> serde_json::Value {
    http.get(url).json_answer().await
}

/// Assert that `r` is the 403 page, naming `who` and offering to sign out; the page.
pub async fn forbidden_page(r: reqwest::Response, who: &str) -> String {
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(page.contains(who) && page.contains("/oauth2/sign_out"), "{page}");
    page
}

/// Send a test request and read its answer as JSON, whatever its status.
pub trait JsonAnswer {
    fn json_answer<T: serde::de::DeserializeOwned>(self) -> impl std::future::Future<Output = T> + Send;
}

impl JsonAnswer for reqwest::RequestBuilder {
    async fn json_answer<T: serde::de::DeserializeOwned>(self) -> T {
        self.sent().await.json().await.unwrap()
    }
}

/// The headers that describe a subrequest's original request (`X-Forwarded-Proto`, `-Host`,
/// `-Uri`), as a forward-auth proxy sends them.
pub trait Forwarded {
    fn forwarded<P, H, U>(self, proto: P, host: H, uri: U) -> Self
    where
        reqwest::header::HeaderValue: TryFrom<P> + TryFrom<H> + TryFrom<U>,
        <reqwest::header::HeaderValue as TryFrom<P>>::Error: Into<axum::http::Error>,
        <reqwest::header::HeaderValue as TryFrom<H>>::Error: Into<axum::http::Error>,
        <reqwest::header::HeaderValue as TryFrom<U>>::Error: Into<axum::http::Error>;
}

impl Forwarded for reqwest::RequestBuilder {
    fn forwarded<P, H, U>(self, proto: P, host: H, uri: U) -> Self
    where
        reqwest::header::HeaderValue: TryFrom<P> + TryFrom<H> + TryFrom<U>,
        <reqwest::header::HeaderValue as TryFrom<P>>::Error: Into<axum::http::Error>,
        <reqwest::header::HeaderValue as TryFrom<H>>::Error: Into<axum::http::Error>,
        <reqwest::header::HeaderValue as TryFrom<U>>::Error: Into<axum::http::Error>,
    {
        self.header("x-forwarded-proto", proto)
            .header("x-forwarded-host", host)
            .header("x-forwarded-uri", uri)
    }
}

/// A browser's page load (`Accept: text/html`).
pub trait Page {
    fn page(self) -> Self;
}

impl Page for reqwest::RequestBuilder {
    fn page(self) -> Self {
        self.header("accept", "text/html")
    }
}

/// Send a test request; its answer (a request that cannot be sent fails the test).
pub trait Sent {
    fn sent(self) -> impl std::future::Future<Output = reqwest::Response> + Send;
}

impl Sent for reqwest::RequestBuilder {
    async fn sent(self) -> reqwest::Response {
        self.send().await.unwrap()
    }
}
