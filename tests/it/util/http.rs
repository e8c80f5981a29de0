//! Requests of the tests: sent, read as text or JSON, and the answers every test checks alike.

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

/// Send a test request; its answer (a request that cannot be sent fails the test).
pub trait Sent {
    fn sent(self) -> impl std::future::Future<Output = reqwest::Response> + Send;
}

impl Sent for reqwest::RequestBuilder {
    async fn sent(self) -> reqwest::Response {
        self.send().await.unwrap()
    }
}
