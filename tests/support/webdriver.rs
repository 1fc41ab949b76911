//! A minimal W3C WebDriver client, over the tests' own HTTP client: enough to drive headless
//! Chromium through chromedriver (a session, navigation, scripts, typing, clicks, screenshots).
//!
//! Written here rather than taken from a WebDriver crate: those pull in `url` and ICU, whose
//! proc-macro features differ from the gateway's, so cargo would build wasmtime a second time
//! just for the tests (about ten minutes on CI's two cores).

use serde_json::{Value, json};

use crate::http;

/// The key under which WebDriver answers an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session.
pub struct Browser {
    /// `http://host:port/session/<id>`
    session: String,
}

/// An element found on the page.
pub struct Element(String);

async fn call(method: &str, url: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let reply = http::send(
        method,
        url,
        &[("content-type", "application/json; charset=utf-8")],
        &body,
    )
    .await;
    let answer: Value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {}", reply.text()));
    let value = answer["value"].clone();
    if reply.status != 200 {
        panic!(
            "{method} {url}: {} {}: {}",
            reply.status, value["error"], value["message"]
        );
    }
    value
}

impl Browser {
    /// Opens a session on the WebDriver server at `driver` (e.g. `http://127.0.0.1:9515`).
    pub async fn open(driver: &str, capabilities: Value) -> Browser {
        let value = call(
            "POST",
            &format!("{driver}/session"),
            Some(json!({ "capabilities": { "alwaysMatch": capabilities } })),
        )
        .await;
        let id = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {value}"));
        Browser {
            session: format!("{driver}/session/{id}"),
        }
    }

    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        call(method, &format!("{}{path}", self.session), body).await
    }

    pub async fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` as a function body with `args` and answers what it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    pub async fn find(&self, css: &str) -> Element {
        let value = self
            .command(
                "POST",
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        Element(
            value[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("{css}: no element in {value}"))
                .to_owned(),
        )
    }

    /// Types `text` into the element, as a user would.
    pub async fn send_keys(&self, element: &Element, text: &str) {
        self.command(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn click(&self, element: &Element) {
        self.command(
            "POST",
            &format!("/element/{}/click", element.0),
            Some(json!({})),
        )
        .await;
    }

    /// The visible page as PNG.
    pub async fn screenshot(&self) -> Vec<u8> {
        let value = self.command("GET", "/screenshot", None).await;
        base64_decode(value.as_str().expect("a base64 screenshot"))
    }

    pub async fn close(self) {
        call("DELETE", &self.session, None).await;
    }
}

/// Standard base64 (with padding), as WebDriver sends screenshots.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let sextet = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {:?}", c as char),
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(sextet(*c)) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}
