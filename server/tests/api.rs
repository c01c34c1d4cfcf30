//! The router called directly: every bad input gets a clear JSON error.

use amicus_core::UserId;
use amicus_core::identity::{Statement, UserIdentity};
use amicus_server::{Config, Registration, app, open};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Api {
    router: axum::Router,
    _dir: tempfile::TempDir,
}

impl Api {
    fn new(registration: Registration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data: dir.path().join("data"),
            registration,
            ..Config::default()
        };
        let state = open(config).unwrap();
        Self {
            router: app(state),
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Body,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let response = self
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn json(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        self.call(method, uri, token, Body::from(body.to_string()))
            .await
    }

    /// Registers `name` and signs its device in; returns the token.
    async fn user(&self, name: &str, invite: Option<&str>) -> (StatusCode, Option<String>) {
        match self.account(name, invite).await {
            Ok((_, token)) => (StatusCode::CREATED, Some(token)),
            Err(status) => (status, None),
        }
    }

    /// Registers `name` and signs its first device in: its identity and token.
    async fn account(
        &self,
        name: &str,
        invite: Option<&str>,
    ) -> Result<(UserIdentity, String), StatusCode> {
        self.account_device(name, invite)
            .await
            .map(|(identity, _, token)| (identity, token))
    }

    /// Like [`Self::account`], with the signed-in device.
    async fn account_device(
        &self,
        name: &str,
        invite: Option<&str>,
    ) -> Result<(UserIdentity, amicus_core::identity::Device, String), StatusCode> {
        let identity = UserIdentity::generate(UserId::new(name).unwrap());
        let device = identity.new_device();
        let cert = hex::encode(postcard::to_allocvec(device.certificate()).unwrap());
        let (status, _) = self
            .json(
                "POST",
                "/v1/register",
                None,
                json!({ "certificate": cert, "invite": invite }),
            )
            .await;
        if status != StatusCode::CREATED {
            return Err(status);
        }
        let token = self.sign_in(&device).await;
        Ok((identity, device, token))
    }

    /// Signs a device in; returns the token.
    async fn sign_in(&self, device: &amicus_core::identity::Device) -> String {
        let (_, c) = self
            .json(
                "POST",
                "/v1/challenge",
                None,
                json!({ "device": device.id().to_hex() }),
            )
            .await;
        let challenge = hex::decode(c["challenge"].as_str().unwrap()).unwrap();
        let sig = device.sign_statement(Statement::SignIn, &challenge);
        let (status, s) = self
            .json("POST", "/v1/session", None, json!({ "device": device.id().to_hex(), "challenge": hex::encode(&challenge), "signature": hex::encode(sig) }))
            .await;
        assert_eq!(status, StatusCode::OK, "{s}");
        s["token"].as_str().unwrap().to_owned()
    }
}

fn check_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn bad_requests_get_json_errors_that_say_what_was_wrong() {
    let api = Api::new(Registration::Open);
    let (s, b) = api.json("GET", "/v1/nowhere", None, json!({})).await;
    check_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    let (s, b) = api
        .call("POST", "/v1/register", None, Body::from("{not json"))
        .await;
    check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");
    let (s, b) = api
        .json("POST", "/v1/register", None, json!({ "certificate": "zz" }))
        .await;
    check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");
    let (s, b) = api
        .json(
            "POST",
            "/v1/register",
            None,
            json!({ "certificate": "00", "extra": 1 }),
        )
        .await;
    check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");
    let (s, b) = api.json("GET", "/v1/spaces", None, json!({})).await;
    check_error(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (s, b) = api.json("DELETE", "/v1/register", None, json!({})).await;
    check_error(s, &b, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let (s, b) = api
        .json("GET", "/v1/spaces", Some("forged"), json!({}))
        .await;
    check_error(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    let huge = Body::from(vec![b'a'; 8 << 20]);
    let (s, b) = api.call("POST", "/v1/register", None, huge).await;
    check_error(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "too_large");

    let (_, token) = api.user("alice", None).await;
    let t = token.as_deref();
    let (s, b) = api.call("GET", "/v1/ws", t, Body::empty()).await;
    assert!(s.is_client_error() && b["error"].is_string(), "{s} {b}");
    let (s, b) = api.call("DELETE", "/v1/welcomes/x", t, Body::empty()).await;
    check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");
    for bad in ["..%2F..%2Fetc%2Fpasswd", "abc", &"A".repeat(64)] {
        let (s, b) = api
            .call("GET", &format!("/v1/blobs/{bad}"), t, Body::empty())
            .await;
        check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");
    }
    let wrong = "00".repeat(32);
    let (s, b) = api
        .call("PUT", &format!("/v1/blobs/{wrong}"), t, Body::from("hello"))
        .await;
    check_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch");
    let (s, b) = api
        .call(
            "PUT",
            &format!("/v1/blobs/{wrong}"),
            t,
            Body::from(vec![0u8; 2 << 20]),
        )
        .await;
    check_error(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    let id = blake3::hash(b"hello").to_hex().to_string();
    let (s, _) = api
        .call("PUT", &format!("/v1/blobs/{id}"), t, Body::from("hello"))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, b) = api
        .json(
            "POST",
            "/v1/blobs/missing",
            t,
            json!({ "ids": [id, wrong] }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["missing"], json!([wrong]));
    let (s, b) = api
        .json(
            "POST",
            "/v1/key-packages",
            t,
            json!({ "key_packages": ["00"] }),
        )
        .await;
    check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");
    let (s, b) = api
        .json(
            "POST",
            "/v1/spaces",
            t,
            json!({ "id": "00", "kind": "confidential" }),
        )
        .await;
    check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");
    let (s, b) = api
        .json(
            "POST",
            "/v1/spaces",
            t,
            json!({ "id": "00".repeat(16), "kind": "confidential", "name": "leak" }),
        )
        .await;
    check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");
}

/// Registers `name` with a fresh identity: the status and the answer.
async fn register_answer(api: &Api, name: &str, invite: Option<&str>) -> (StatusCode, Value) {
    let identity = UserIdentity::generate(UserId::new(name).unwrap());
    let cert = hex::encode(postcard::to_allocvec(identity.new_device().certificate()).unwrap());
    api.json(
        "POST",
        "/v1/register",
        None,
        json!({ "certificate": cert, "invite": invite }),
    )
    .await
}

/// Refusals a person meets carry, beside their kind, a stable reason that
/// the interface words in the person's language (PROTOCOL §15).
fn check_reason(status: StatusCode, body: &Value, expected: StatusCode, reason: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn the_first_account_administers_and_later_ones_need_an_invitation() {
    let api = Api::new(Registration::Invite);
    let (s, admin) = api.user("admin", None).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, b) = register_answer(&api, "eve", None).await;
    check_reason(s, &b, StatusCode::FORBIDDEN, "invitation_needed");
    let (s, b) = register_answer(&api, "eve", Some("guess")).await;
    check_reason(s, &b, StatusCode::FORBIDDEN, "invitation_unknown");
    let (s, b) = api
        .json("POST", "/v1/invites", admin.as_deref(), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let code = b["code"].as_str().unwrap().to_owned();
    let (s, member) = api.user("bob", Some(&code)).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, b) = register_answer(&api, "carol", Some(&code)).await;
    check_reason(s, &b, StatusCode::FORBIDDEN, "invitation_unknown");
    let (s, b) = register_answer(&api, "bob", Some(&code)).await;
    check_reason(s, &b, StatusCode::CONFLICT, "name_taken");
    let (s, b) = api
        .json("POST", "/v1/invites", member.as_deref(), json!({}))
        .await;
    check_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(b["reason"], "not_administrator");
    // A refusal without a specific reason has none.
    let (s, b) = api.json("GET", "/v1/spaces", None, Value::Null).await;
    check_error(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(b.get("reason"), None, "{b}");
}

/// Fetches `uri` from a router; returns the status, the CSP header and the body.
async fn get_raw(router: &axum::Router, uri: &str) -> (StatusCode, Option<String>, Vec<u8>) {
    let response = router
        .clone()
        .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let csp = response
        .headers()
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, csp, bytes.to_vec())
}

#[tokio::test]
async fn the_web_app_is_served_under_a_strict_policy_and_nothing_outside_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web");
    std::fs::create_dir_all(web.join("pkg")).unwrap();
    std::fs::write(web.join("index.html"), "<!doctype html><title>app</title>").unwrap();
    std::fs::write(web.join("pkg/m.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "outside the web directory").unwrap();
    let config = Config {
        data: dir.path().join("data"),
        web: Some(web.clone()),
        ..Config::default()
    };
    let router = app(open(config).unwrap());

    let (status, csp, body) = get_raw(&router, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("<title>app</title>"));
    let csp = csp.expect("a Content-Security-Policy header");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self' 'wasm-unsafe-eval'")
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    let (status, _, _) = get_raw(&router, "/pkg/m.wasm").await;
    assert_eq!(status, StatusCode::OK);
    // A precompressed sibling goes to browsers that accept its encoding
    // (brotli first), with the original's type; others get the file itself.
    std::fs::write(web.join("pkg/m.wasm.gz"), b"gzip bytes").unwrap();
    std::fs::write(web.join("pkg/m.wasm.br"), b"brotli bytes").unwrap();
    for (accept, encoding, body) in [
        (Some("gzip, deflate, br"), Some("br"), &b"brotli bytes"[..]),
        (Some("gzip, deflate"), Some("gzip"), &b"gzip bytes"[..]),
        (None, None, &b"\0asm\x01\0\0\0"[..]),
    ] {
        let mut request = Request::builder().uri("/pkg/m.wasm");
        if let Some(a) = accept {
            request = request.header("accept-encoding", a);
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let h = response.headers();
        assert_eq!(
            h.get("content-encoding").map(|v| v.to_str().unwrap()),
            encoding
        );
        assert_eq!(h.get("content-type").unwrap(), "application/wasm");
        assert!(h.get("content-security-policy").is_some());
        assert_eq!(h.get("vary").unwrap(), "accept-encoding");
        let got = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(&got[..], body);
    }
    // Revalidation goes by content, not by date: a file replaced by one of
    // another build with an older modification time is sent again to a
    // browser holding the first, and the same file is not.
    let ask = |tag: Option<&str>, since: Option<&str>| {
        let mut request = Request::builder().uri("/pkg/m.wasm");
        if let Some(tag) = tag {
            request = request.header("if-none-match", tag);
        }
        if let Some(since) = since {
            request = request.header("if-modified-since", since);
        }
        router.clone().oneshot(request.body(Body::empty()).unwrap())
    };
    let first = ask(None, None).await.unwrap();
    assert!(first.headers().get("last-modified").is_none());
    let tag = first.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(
        ask(Some(&tag), None).await.unwrap().status(),
        StatusCode::NOT_MODIFIED
    );
    let later = "Fri, 01 Jan 2100 00:00:00 GMT";
    assert_eq!(
        ask(None, Some(later)).await.unwrap().status(),
        StatusCode::OK
    );
    let wasm = web.join("pkg/m.wasm");
    std::fs::remove_file(web.join("pkg/m.wasm.gz")).unwrap();
    std::fs::remove_file(web.join("pkg/m.wasm.br")).unwrap();
    // Another build's file, with an old modification time.
    let replace = |bytes: &[u8]| {
        std::fs::write(&wasm, bytes).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&wasm)
            .unwrap()
            .set_modified(
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30),
            )
            .unwrap();
    };
    replace(b"\0asm\x01\0\0\0another build");
    let again = ask(Some(&tag), Some(later)).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_ne!(again.headers()["etag"].to_str().unwrap(), tag);
    let second = again.headers()["etag"].to_str().unwrap().to_string();
    let got = axum::body::to_bytes(again.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(&got[..], b"\0asm\x01\0\0\0another build");
    // The same size and the same time, other bytes (a build's service
    // worker differs from the last one's in its name only): sent again.
    replace(b"\0asm\x01\0\0\0a third build");
    let third = ask(Some(&second), Some(later)).await.unwrap();
    assert_eq!(third.status(), StatusCode::OK);
    let third = third.headers()["etag"].to_str().unwrap().to_string();
    // A 304 keeps the page's policy; a directory asked without its `/` is
    // not taken for its index.
    let not_modified = ask(Some(&third), None).await.unwrap();
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert!(
        not_modified
            .headers()
            .get("content-security-policy")
            .is_some()
    );
    std::fs::write(
        web.join("pkg/index.html"),
        "<!doctype html><title>pkg</title>",
    )
    .unwrap();
    let pkg = router
        .clone()
        .oneshot(
            Request::builder()
                .uri("/pkg")
                .header("if-none-match", "*")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_ne!(pkg.status(), StatusCode::NOT_MODIFIED);
    for escape in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/pkg/..%2f..%2fsecret.txt",
    ] {
        let (status, _, body) = get_raw(&router, escape).await;
        assert_ne!(status, StatusCode::OK, "{escape} was served");
        assert!(!String::from_utf8_lossy(&body).contains("outside the web directory"));
    }
    // The API keeps its JSON errors.
    let (status, _, body) = get_raw(&router, "/v1/no-such-route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "not_found");
}

#[tokio::test]
async fn without_a_built_app_the_root_says_how_to_build_it() {
    let api = Api::new(Registration::Open);
    let (status, csp, body) = get_raw(&api.router, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(csp.is_some());
    assert!(String::from_utf8_lossy(&body).contains("cargo xtask run"));
    let (status, _, _) = get_raw(&api.router, "/index.html").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Pairing through the server's mailbox (PROTOCOL §3.6): offers only for
/// existing users, within limits and on a channel the user opened (one
/// offer each), listed only to that user, answered only by that user and
/// once, the answer delivered once; the linked device then signs in.
#[tokio::test]
async fn a_new_device_pairs_through_the_mailbox_and_signs_in() {
    use amicus_core::pairing::{NewDevice, PairingCode, accept_offer};
    let api = Api::new(Registration::Open);
    let (amina, amina_token) = api.account("amina", None).await.unwrap();
    let (_, bruno_token) = api.account("bruno", None).await.unwrap();
    let code = PairingCode::random();
    let new = NewDevice::generate(amina.user().clone());
    let offer = hex::encode(new.offer(&code));
    let channel = hex::encode(code.channel());
    let post = |user: &str, channel: &str, offer: &str| json!({ "user": user, "channel": channel, "offer": offer });

    // Before Amina's device opens the channel, no offer is kept for her.
    let (st, b) = api
        .json("POST", "/v1/pairing", None, post("amina", &channel, &offer))
        .await;
    check_error(st, &b, StatusCode::NOT_FOUND, "not_found");
    let (st, b) = api
        .json(
            "POST",
            "/v1/pairing/open",
            None,
            json!({ "channel": channel }),
        )
        .await;
    check_error(st, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (st, b) = api
        .json(
            "POST",
            "/v1/pairing/open",
            Some(&amina_token),
            json!({ "channel": channel }),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{b}");
    for (body, status, error) in [
        (
            post("nobody", &channel, &offer),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            post("bruno", &channel, &offer),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            post("amina", &"00".repeat(16), &offer),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            post("amina", &channel, "zz"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            post("amina", &channel, &"00".repeat(1025)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ] {
        let (st, b) = api.json("POST", "/v1/pairing", None, body).await;
        check_error(st, &b, status, error);
    }
    let (st, b) = api
        .json("POST", "/v1/pairing", None, post("amina", &channel, &offer))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    // The channel took its one offer.
    let (st, b) = api
        .json("POST", "/v1/pairing", None, post("amina", &channel, &offer))
        .await;
    check_error(st, &b, StatusCode::NOT_FOUND, "not_found");

    let (st, b) = api.json("GET", "/v1/pairing", None, json!(null)).await;
    check_error(st, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (_, b) = api
        .json("GET", "/v1/pairing", Some(&bruno_token), json!(null))
        .await;
    assert_eq!(b["offers"], json!([]), "Bruno sees no offer for Amina");
    let (_, b) = api
        .json("GET", "/v1/pairing", Some(&amina_token), json!(null))
        .await;
    assert_eq!(b["offers"], json!([{ "id": id, "offer": offer }]));
    let (st, b) = api
        .json("GET", &format!("/v1/pairing/{id}"), None, json!(null))
        .await;
    assert_eq!((st, &b["answer"]), (StatusCode::OK, &Value::Null));
    let (st, b) = api
        .json("GET", "/v1/pairing/not-hex", None, json!(null))
        .await;
    check_error(st, &b, StatusCode::BAD_REQUEST, "bad_request");

    let contacts = amicus_core::identity::Contacts::default();
    let (cert, answer) =
        accept_offer(&amina, &code, &hex::decode(&offer).unwrap(), &contacts).unwrap();
    let answer = json!({ "answer": hex::encode(&answer) });
    let path = format!("/v1/pairing/{id}/answer");
    let (st, b) = api
        .json("POST", &path, Some(&bruno_token), answer.clone())
        .await;
    check_error(st, &b, StatusCode::NOT_FOUND, "not_found");
    let cert_hex = hex::encode(postcard::to_allocvec(&cert).unwrap());
    let (st, b) = api
        .json(
            "POST",
            "/v1/devices",
            Some(&amina_token),
            json!({ "certificate": cert_hex }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let (st, _) = api
        .json("POST", &path, Some(&amina_token), answer.clone())
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, b) = api.json("POST", &path, Some(&amina_token), answer).await;
    check_error(st, &b, StatusCode::CONFLICT, "conflict");

    let (st, b) = api
        .json("GET", &format!("/v1/pairing/{id}"), None, json!(null))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (device, _) = new
        .complete(&code, &hex::decode(b["answer"].as_str().unwrap()).unwrap())
        .unwrap();
    let (st, b) = api
        .json("GET", &format!("/v1/pairing/{id}"), None, json!(null))
        .await;
    check_error(st, &b, StatusCode::NOT_FOUND, "not_found");
    assert!(!api.sign_in(&device).await.is_empty());
}

/// A public copy's provenance is kept only if one of the publisher's own
/// devices signed this very copy and source (PROTOCOL §15.1).
#[tokio::test]
async fn provenance_is_kept_only_when_the_publishers_device_signed_this_copy() {
    use amicus_core::publication::provenance_message;
    let api = Api::new(Registration::Open);
    let (_, alice, token) = api.account_device("alice", None).await.unwrap();
    let (_, bob, _) = api.account_device("bob", None).await.unwrap();
    let public = "0f".repeat(16);
    let (status, body) = api
        .json(
            "POST",
            "/v1/spaces",
            Some(&token),
            json!({ "id": public, "kind": "public", "name": "Jurisprudence" }),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    let space = amicus_core::SpaceId::from_hex(&public).unwrap();
    let (source, stream, heads) = ("aa".repeat(16), "bb".repeat(16), vec!["cc".repeat(32)]);
    let write = |signer: &amicus_core::identity::Device, signed_body: &str| {
        let message = provenance_message(
            space,
            "arret-1",
            "Arrêt",
            signed_body,
            &[],
            &source,
            &stream,
            &heads,
        );
        json!({
            "title": "Arrêt",
            "body": "La Cour constate la violation.",
            "provenance": {
                "source_space": source,
                "source_stream": stream,
                "heads": heads,
                "device": signer.id().to_hex(),
                "signature": hex::encode(signer.sign_statement(Statement::Provenance, &message)),
            },
        })
    };
    let uri = format!("/v1/public/{public}/docs/arret-1");
    // Signed over another text, by someone else's device, or malformed:
    // refused, and nothing is written.
    let mut malformed = write(&alice, "La Cour constate la violation.");
    malformed["provenance"]["signature"] = json!("00");
    for body in [
        write(&alice, "La Cour ne constate rien."),
        write(&bob, "La Cour constate la violation."),
        malformed,
    ] {
        let (status, answer) = api.json("PUT", &uri, Some(&token), body).await;
        check_error(status, &answer, StatusCode::BAD_REQUEST, "bad_request");
        let (status, _) = api.json("GET", &uri, Some(&token), Value::Null).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, answer) = api
        .json(
            "PUT",
            &uri,
            Some(&token),
            write(&alice, "La Cour constate la violation."),
        )
        .await;
    assert!(status.is_success(), "{status} {answer}");
    let (status, record) = api.json("GET", &uri, Some(&token), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["provenance"]["device"], alice.id().to_hex());
    assert_eq!(record["provenance"]["heads"], json!(heads));

    // Formatting: kept when signed, refused when not signed or outside
    // the text (nothing written).
    let text = "La Cour constate la violation.";
    let bold = amicus_core::publication::TextMark {
        mark: "bold".into(),
        start: 3,
        end: 7,
    };
    let formatted = |signed: &[amicus_core::publication::TextMark], sent: Value| {
        let message = provenance_message(
            space, "arret-2", "Arrêt", text, signed, &source, &stream, &heads,
        );
        let mut b = write(&alice, text);
        b["provenance"]["signature"] = json!(hex::encode(
            alice.sign_statement(Statement::Provenance, &message)
        ));
        b["marks"] = sent;
        b
    };
    let uri2 = format!("/v1/public/{public}/docs/arret-2");
    for body in [
        formatted(&[], json!([{ "mark": "bold", "start": 3, "end": 7 }])),
        formatted(std::slice::from_ref(&bold), json!([])),
        formatted(&[], json!([{ "mark": "bold", "start": 3, "end": 99 }])),
        formatted(&[], json!([{ "mark": "script", "start": 3, "end": 7 }])),
    ] {
        let (status, answer) = api.json("PUT", &uri2, Some(&token), body).await;
        check_error(status, &answer, StatusCode::BAD_REQUEST, "bad_request");
        let (status, _) = api.json("GET", &uri2, Some(&token), Value::Null).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, answer) = api
        .json(
            "PUT",
            &uri2,
            Some(&token),
            formatted(
                std::slice::from_ref(&bold),
                json!([{ "mark": "bold", "start": 3, "end": 7 }]),
            ),
        )
        .await;
    assert!(status.is_success(), "{status} {answer}");
    let (_, record) = api.json("GET", &uri2, Some(&token), Value::Null).await;
    assert_eq!(
        record["marks"],
        json!([{ "mark": "bold", "start": 3, "end": 7 }])
    );
}

/// Withdrawing a public copy (PROTOCOL §15.1): only whoever published it or
/// a content manager, signed by one of their own devices over this very
/// copy; the copy is gone (410, naming who withdrew it) and a later copy
/// under the same id is not withdrawn by replaying the signature.
#[tokio::test]
async fn a_public_copy_is_withdrawn_by_its_publisher_with_a_signature_over_that_copy() {
    use amicus_core::publication::Withdrawal;
    let api = Api::new(Registration::Open);
    let (_, alice, alice_token) = api.account_device("alice", None).await.unwrap();
    let (_, bob, bob_token) = api.account_device("bob", None).await.unwrap();
    let (_, _, carol_token) = api.account_device("carol", None).await.unwrap();
    let public = "0e".repeat(16);
    let space = amicus_core::SpaceId::from_hex(&public).unwrap();
    let (status, body) = api
        .json(
            "POST",
            "/v1/spaces",
            Some(&alice_token),
            json!({ "id": public, "kind": "public", "name": "Jurisprudence" }),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    let (status, body) = api
        .json(
            "PUT",
            &format!("/v1/spaces/{public}/roles/bob"),
            Some(&alice_token),
            json!({ "role": "contributor" }),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    // Each one's own role in the listing of spaces.
    for (token, role) in [
        (&alice_token, json!("space_manager")),
        (&bob_token, json!("contributor")),
        (&carol_token, Value::Null),
    ] {
        let (_, list) = api
            .json("GET", "/v1/spaces", Some(token), Value::Null)
            .await;
        let listed = list["spaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == public.as_str())
            .cloned()
            .unwrap();
        assert_eq!(listed["role"], role, "{listed}");
    }
    let uri = format!("/v1/public/{public}/docs/arret-2");
    let publish = || {
        api.json(
            "PUT",
            &uri,
            Some(&bob_token),
            json!({ "title": "Arrêt", "body": "La Cour constate la violation." }),
        )
    };
    let (status, written) = publish().await;
    assert!(status.is_success(), "{status} {written}");
    let updated = written["updated"].as_u64().unwrap();
    // Another contributor may not replace Bob's copy (and so become able
    // to withdraw it).
    let (_, _, dan_token) = api.account_device("dan", None).await.unwrap();
    api.json(
        "PUT",
        &format!("/v1/spaces/{public}/roles/dan"),
        Some(&alice_token),
        json!({ "role": "contributor" }),
    )
    .await;
    let (status, answer) = api
        .json(
            "PUT",
            &uri,
            Some(&dan_token),
            json!({ "title": "Arrêt", "body": "Autre texte." }),
        )
        .await;
    check_reason(status, &answer, StatusCode::FORBIDDEN, "not_publisher");
    let withdraw = |w: &Withdrawal| json!({ "withdrawal": w });

    let refusals = [
        // Carol neither wrote it nor manages the space.
        (
            &carol_token,
            Withdrawal::sign(&bob, space, "arret-2", updated),
            StatusCode::FORBIDDEN,
        ),
        // Another copy's time.
        (
            &bob_token,
            Withdrawal::sign(&bob, space, "arret-2", updated + 1),
            StatusCode::BAD_REQUEST,
        ),
        // Alice's device, presented by Bob.
        (
            &bob_token,
            Withdrawal::sign(&alice, space, "arret-2", updated),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (token, w, expected) in refusals {
        let (status, answer) = api.json("DELETE", &uri, Some(token), withdraw(&w)).await;
        assert_eq!(status, expected, "{answer}");
        let (status, _) = api.json("GET", &uri, Some(token), Value::Null).await;
        assert_eq!(status, StatusCode::OK, "the copy stays after a refusal");
    }
    let (status, answer) = api.json("DELETE", &uri, Some(&bob_token), json!({})).await;
    check_error(status, &answer, StatusCode::BAD_REQUEST, "bad_request");
    // Whether a copy is there, asked without an error for "no".
    let one = |id: &str| {
        let path = format!("/v1/public/{public}/docs?id={id}");
        let token = carol_token.clone();
        let api = &api;
        async move { api.json("GET", &path, Some(&token), Value::Null).await }
    };
    let (status, found) = one("arret-2").await;
    assert_eq!(status, StatusCode::OK);
    let found = found["documents"].as_array().unwrap().clone();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (&found[0]["id"], &found[0]["updated"]),
        (&json!("arret-2"), &json!(updated))
    );
    let (status, none) = one("arret-9").await;
    assert_eq!((status, &none["documents"]), (StatusCode::OK, &json!([])));
    let (status, answer) = one("Arr%C3%AAt").await;
    check_error(status, &answer, StatusCode::BAD_REQUEST, "bad_request");

    let signed = Withdrawal::sign(&bob, space, "arret-2", updated);
    let (status, answer) = api
        .json("DELETE", &uri, Some(&bob_token), withdraw(&signed))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = api.json("GET", &uri, Some(&carol_token), Value::Null).await;
    check_error(status, &answer, StatusCode::GONE, "gone");
    assert!(
        answer["message"].as_str().unwrap().contains("bob"),
        "{answer}"
    );
    let (_, listed) = api
        .json(
            "GET",
            &format!("/v1/public/{public}/docs"),
            Some(&carol_token),
            Value::Null,
        )
        .await;
    assert_eq!(listed["documents"], json!([]));
    let (status, none) = one("arret-2").await;
    assert_eq!((status, &none["documents"]), (StatusCode::OK, &json!([])));

    // Published again: a later copy, which the old signature does not
    // withdraw; a content manager's own signature does.
    let (status, again) = publish().await;
    assert!(status.is_success(), "{status} {again}");
    let later = again["updated"].as_u64().unwrap();
    assert!(later > updated, "{later} after {updated}");
    let (status, _) = api
        .json("DELETE", &uri, Some(&bob_token), withdraw(&signed))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let by_alice = Withdrawal::sign(&alice, space, "arret-2", later);
    let (status, answer) = api
        .json("DELETE", &uri, Some(&alice_token), withdraw(&by_alice))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// Recovery (PROTOCOL §3.7): the kit a signed-in device stores is handed
/// only to a request showing the code's access value (the same refusal for
/// an unknown user, a user without a kit and a wrong code); a device
/// certified by the identity key it holds then registers without a session
/// and signs in. A certificate made with another identity key or for
/// another user is refused, and a new code shuts the old one out.
#[tokio::test]
async fn a_lost_account_is_recovered_with_its_code_and_nothing_else() {
    use amicus_core::recovery::{RecoveryCode, access_verifier, open_kit, seal_kit};
    let api = Api::new(Registration::Open);
    let (amina, token) = api.account("amina", None).await.unwrap();
    let (bruno, _) = api.account("bruno", None).await.unwrap();
    let code = RecoveryCode::random();
    let access = hex::encode(*code.access());
    let fetch = |user: &str, access: &str| {
        (
            format!("/v1/recovery/{user}/kit"),
            json!({ "access": access }),
        )
    };
    for user in ["amina", "nobody"] {
        let (uri, body) = fetch(user, &access);
        let (status, answer) = api.json("POST", &uri, None, body).await;
        check_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    }
    let (_, status) = api
        .json("GET", "/v1/recovery", Some(&token), Value::Null)
        .await;
    assert_eq!(status, json!({ "exists": false }));
    let kit = seal_kit(&amina, &code);
    let put = |kit: &[u8], code: &RecoveryCode| json!({ "kit": hex::encode(kit), "verifier": hex::encode(access_verifier(&code.access())) });
    let (status, body) = api
        .json("PUT", "/v1/recovery", None, put(&kit, &code))
        .await;
    check_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (status, _) = api
        .json(
            "PUT",
            "/v1/recovery",
            Some(&token),
            json!({ "kit": "00".repeat(2000), "verifier": "00".repeat(32) }),
        )
        .await;
    assert!(status.is_client_error(), "{status}");
    let (status, body) = api
        .json("PUT", "/v1/recovery", Some(&token), put(&kit, &code))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, status) = api
        .json("GET", "/v1/recovery", Some(&token), Value::Null)
        .await;
    assert_eq!(status, json!({ "exists": true }));

    // Without the code, nothing: not the kit, not a device.
    let wrong = hex::encode(*RecoveryCode::random().access());
    let (uri, body) = fetch("amina", &wrong);
    let (status, answer) = api.json("POST", &uri, None, body).await;
    check_error(status, &answer, StatusCode::NOT_FOUND, "not_found");

    // The browser that lost everything: no session, the code in hand.
    let (uri, body) = fetch("amina", &access);
    let (status, answer) = api.json("POST", &uri, None, body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let fetched = hex::decode(answer["kit"].as_str().unwrap()).unwrap();
    assert_eq!(fetched, kit);
    let identity = open_kit(amina.user(), &code, &fetched).unwrap();
    let device = identity.new_device();
    let register = |d: &amicus_core::identity::Device, access: &str| {
        json!({
            "access": access,
            "certificate": hex::encode(postcard::to_allocvec(d.certificate()).unwrap()),
        })
    };
    let uri = "/v1/recovery/amina/devices";
    let impostor = UserIdentity::generate(UserId::new("amina").unwrap()).new_device();
    for (body, status, error) in [
        (
            register(&device, &wrong),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            register(&impostor, &access),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            register(&bruno.new_device(), &access),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ] {
        let (st, answer) = api.json("POST", uri, None, body).await;
        check_error(st, &answer, status, error);
    }
    let (status, body) = api
        .json("POST", uri, None, register(&device, &access))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api
        .json("POST", uri, None, register(&device, &access))
        .await;
    check_error(status, &body, StatusCode::CONFLICT, "conflict");
    let recovered = api.sign_in(&device).await;
    let (status, listing) = api
        .json("GET", "/v1/users/amina", Some(&recovered), Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listing["devices"].as_array().unwrap().len(), 2, "{listing}");

    // A new code from the recovered device: the old one opens nothing here.
    let code2 = RecoveryCode::random();
    let (status, _) = api
        .json(
            "PUT",
            "/v1/recovery",
            Some(&recovered),
            put(&seal_kit(&identity, &code2), &code2),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (uri, body) = fetch("amina", &access);
    let (status, answer) = api.json("POST", &uri, None, body).await;
    check_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    let late = identity.new_device();
    let (status, answer) = api
        .json(
            "POST",
            "/v1/recovery/amina/devices",
            None,
            register(&late, &access),
        )
        .await;
    check_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
}

/// The directory's bad inputs get clear JSON errors and change nothing: no
/// session, a malformed or oversized query, a space that is not listed
/// (the same answer as one that does not exist), a listing or a decline
/// by someone outside the space, unknown fields, a bad user name.
#[tokio::test]
async fn the_directory_refuses_bad_requests_and_lists_nothing_unasked() {
    let api = Api::new(Registration::Open);
    let (_, token) = api.user("amina", None).await;
    let token = token.as_deref();
    let (s, b) = api.json("GET", "/v1/directory", None, json!({})).await;
    check_error(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (s, b) = api.json("GET", "/v1/directory", token, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b, json!({ "total": 0, "spaces": [] }));
    let (s, b) = api
        .json("GET", "/v1/directory?limit=1000", token, json!({}))
        .await;
    check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");
    let (s, b) = api
        .json("GET", "/v1/directory?limit=x", token, json!({}))
        .await;
    check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");

    let nowhere = "00".repeat(16);
    let ask = |space: &str| format!("/v1/directory/{space}/requests");
    let (s, unlisted) = api
        .json("POST", &ask(&nowhere), token, json!({ "message": "" }))
        .await;
    check_error(s, &unlisted, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        unlisted["message"],
        "not found: no such space in the directory"
    );
    let (s, b) = api
        .json("POST", &ask("zz"), token, json!({ "message": "" }))
        .await;
    check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");
    let (s, b) = api
        .json(
            "POST",
            &ask(&nowhere),
            token,
            json!({ "message": "", "extra": 1 }),
        )
        .await;
    check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");
    let listing = json!({ "name": "Kivu", "description": "" });
    let (s, b) = api
        .json("PUT", &format!("/v1/directory/{nowhere}"), token, listing)
        .await;
    check_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    let (s, b) = api
        .json(
            "POST",
            &format!("/v1/directory/{nowhere}/requests/amina/decline"),
            token,
            json!({}),
        )
        .await;
    check_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    let (s, b) = api
        .json(
            "DELETE",
            &format!("/v1/directory/{nowhere}/requests/NOT%20A%20NAME"),
            token,
            json!({}),
        )
        .await;
    assert!(s.is_client_error(), "{s} {b}");
    let (s, b) = api
        .json("GET", "/v1/account/requests", token, json!({}))
        .await;
    assert_eq!((s, b), (StatusCode::OK, json!({ "requests": [] })));
}

impl Api {
    fn with_limits(limits: amicus_server::Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data: dir.path().join("data"),
            registration: Registration::Open,
            limits,
            ..Config::default()
        };
        let state = open(config).unwrap();
        Self {
            router: app(state),
            _dir: dir,
        }
    }

    async fn raw(&self, method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let len = body.len();
        self.raw_with_length(method, uri, body, len).await
    }

    async fn raw_with_length(
        &self,
        method: &str,
        uri: &str,
        body: Vec<u8>,
        length: usize,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/octet-stream")
            .header("content-length", length.to_string())
            .body(Body::from(body))
            .unwrap();
        let response = self.router.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 4 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

#[tokio::test]
async fn drop_boxes_take_sealed_submissions_within_their_limits_and_only_members_read_them() {
    use amicus_core::intake::drop::{self, Part};
    use amicus_core::intake::{self, IntakeSecretKey};
    let api = Api::with_limits(amicus_server::Limits {
        anonymous_rate_burst: 1_000,
        ..amicus_server::Limits::default()
    });
    let (_, amina) = api.user("amina", None).await;
    let (_, bruno) = api.user("bruno", None).await;
    let (amina, bruno) = (amina.as_deref(), bruno.as_deref());
    let space = "ab".repeat(16);
    let (s, b) = api
        .json(
            "POST",
            "/v1/spaces",
            amina,
            json!({ "id": space, "kind": "confidential" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let boxes = format!("/v1/spaces/{space}/drop-boxes");
    let intake_path = format!("/v1/spaces/{space}/intake");
    let dropbox = drop::BoxId::random().to_hex();
    let new_box = json!({ "id": dropbox, "days": 1, "quota": 3 << 20 });

    // No box before the space's key is published.
    let (s, b) = api.json("POST", &boxes, amina, new_box.clone()).await;
    check_reason(s, &b, StatusCode::CONFLICT, "no_intake_key");

    let key = IntakeSecretKey::generate();
    let other = IntakeSecretKey::generate();
    let recipient = key.public().to_age_recipient_string();
    let (s, b) = api
        .json(
            "PUT",
            &intake_path,
            amina,
            json!({ "recipient": recipient, "epoch": 0 }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Another key for the same epoch changes nothing (an older epoch
    // neither: `store::an_older_intake_key_never_replaces_a_newer_one`).
    for epoch in [0] {
        let (s, b) = api
            .json(
                "PUT",
                &intake_path,
                amina,
                json!({ "recipient": other.public().to_age_recipient_string(), "epoch": epoch }),
            )
            .await;
        check_reason(s, &b, StatusCode::CONFLICT, "intake_key_newer");
    }
    let (s, b) = api
        .json(
            "PUT",
            &intake_path,
            amina,
            json!({ "recipient": "age1nope", "epoch": 0 }),
        )
        .await;
    check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");
    // An epoch the space has not reached (it is in epoch 0 at the server)
    // would block every later key: refused.
    for epoch in [1, u64::MAX] {
        let (s, b) = api
            .json(
                "PUT",
                &intake_path,
                amina,
                json!({ "recipient": other.public().to_age_recipient_string(), "epoch": epoch }),
            )
            .await;
        check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");
    }
    // Someone outside the space can neither publish, open nor list.
    let (s, b) = api
        .json(
            "PUT",
            &intake_path,
            bruno,
            json!({ "recipient": recipient, "epoch": 5 }),
        )
        .await;
    check_reason(s, &b, StatusCode::NOT_FOUND, "not_in_space");
    let (s, b) = api.json("POST", &boxes, bruno, new_box.clone()).await;
    check_reason(s, &b, StatusCode::NOT_FOUND, "not_in_space");
    let (s, b) = api.json("GET", &boxes, bruno, json!({})).await;
    check_reason(s, &b, StatusCode::NOT_FOUND, "not_in_space");

    for bad in [
        json!({ "id": dropbox, "days": 0, "quota": 3 << 20 }),
        json!({ "id": dropbox, "days": 400, "quota": 3 << 20 }),
        json!({ "id": dropbox, "days": 1, "quota": 10 }),
        json!({ "id": "xyz", "days": 1, "quota": 3 << 20 }),
    ] {
        let (s, b) = api.json("POST", &boxes, amina, bad.clone()).await;
        check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");
    }
    let (s, b) = api.json("POST", &boxes, amina, new_box.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = api.json("POST", &boxes, amina, new_box).await;
    check_error(s, &b, StatusCode::CONFLICT, "conflict");

    // The page reads the key without an account.
    let info = format!("/v1/drop/{dropbox}");
    let (s, b) = api.json("GET", &info, None, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["recipient"], recipient.as_str());
    assert_eq!(b["left"], 3 << 20);
    let (s, b) = api
        .json(
            "GET",
            &format!("/v1/drop/{}", "00".repeat(16)),
            None,
            json!({}),
        )
        .await;
    check_reason(s, &b, StatusCode::NOT_FOUND, "drop_box_unknown");

    // Over the quota: refused at the declaration, before any byte.
    let declare = format!("/v1/drop/{dropbox}/submissions");
    let fake = |n: usize| {
        (0..n)
            .map(|i| hex::encode([i as u8; 32]))
            .collect::<Vec<_>>()
    };
    let (s, b) = api
        .json(
            "POST",
            &declare,
            None,
            json!({ "epoch": 0, "parts": [{ "size": 4 << 20, "chunks": fake(4) }] }),
        )
        .await;
    check_reason(s, &b, StatusCode::INSUFFICIENT_STORAGE, "drop_box_full");
    // Chunks that do not cover the part, a key that changed, no part.
    let (s, b) = api
        .json(
            "POST",
            &declare,
            None,
            json!({ "epoch": 0, "parts": [{ "size": 2 << 20, "chunks": fake(1) }] }),
        )
        .await;
    check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");
    let (s, b) = api
        .json(
            "POST",
            &declare,
            None,
            json!({ "epoch": 7, "parts": [{ "size": 10, "chunks": fake(1) }] }),
        )
        .await;
    check_reason(s, &b, StatusCode::CONFLICT, "drop_box_key_changed");
    let (s, b) = api
        .json("POST", &declare, None, json!({ "epoch": 0, "parts": [] }))
        .await;
    check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");

    // A statement and a 1.5 MiB file, sealed as the page seals them.
    let statement = Part::statement("Ils sont venus à 6 h. — جاؤوا في السادسة");
    let photo = Part::file("photo.jpg", "image/jpeg", vec![0xd8; 3 << 19]);
    let sealed = [
        intake::seal(&key.public(), &statement.encode()),
        intake::seal(&key.public(), &photo.encode()),
    ];
    let parts: Vec<Value> = sealed
        .iter()
        .map(|p| {
            let chunks: Vec<String> = drop::chunks(p).map(|(id, _)| hex::encode(id)).collect();
            json!({ "size": p.len(), "chunks": chunks })
        })
        .collect();
    let declaration = json!({ "epoch": 0, "parts": parts });
    let (s, first) = api.json("POST", &declare, None, declaration.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(first["missing"].as_array().unwrap().len(), 3);
    // Declared again (a page going on after a cut): same id, nothing reserved twice.
    let (s, again) = api.json("POST", &declare, None, declaration).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"]);
    let sid = first["id"].as_str().unwrap().to_owned();
    let done = format!("/v1/drop/{dropbox}/submissions/{sid}/done");
    let (s, b) = api.json("POST", &done, None, json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["missing"].as_array().unwrap().len(), 3);
    let chunks: Vec<(String, Vec<u8>)> = sealed
        .iter()
        .flat_map(|p| {
            drop::chunks(p)
                .map(|(id, c)| (hex::encode(id), c.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect();
    let (s, b) = api
        .raw(
            "PUT",
            &format!("/v1/drop/{dropbox}/chunks/{}", chunks[0].0),
            b"not it".to_vec(),
        )
        .await;
    check_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch");
    let stray = blake3::hash(b"stray").to_hex().to_string();
    let (s, b) = api
        .raw(
            "PUT",
            &format!("/v1/drop/{dropbox}/chunks/{stray}"),
            b"stray".to_vec(),
        )
        .await;
    check_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    for (id, bytes) in &chunks {
        let (s, b) = api
            .raw(
                "PUT",
                &format!("/v1/drop/{dropbox}/chunks/{id}"),
                bytes.clone(),
            )
            .await;
        assert!(s.is_success(), "{s} {b}");
    }
    let (s, b) = api.json("POST", &done, None, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // With `curl --data-binary @file.age`: an age file whole, one part;
    // what is not an age file is refused, and so is a length over the quota
    // (before its bytes are read).
    let (s, b) = api
        .raw("POST", &info, b"plain text, not sealed".to_vec())
        .await;
    check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");
    let (s, b) = api
        .raw_with_length("POST", &info, b"age-encryption.org/v1\n".to_vec(), 3 << 20)
        .await;
    check_reason(s, &b, StatusCode::INSUFFICIENT_STORAGE, "drop_box_full");
    let by_curl = intake::seal(&key.public(), b"raw bytes from age -r");
    let (s, b) = api.raw("POST", &info, by_curl.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // A member lists both submissions and opens them with the space's key.
    let (s, listing) = api.json("GET", &boxes, amina, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{listing}");
    assert_eq!(listing["intake"]["recipient"], recipient.as_str());
    let submissions = listing["boxes"][0]["submissions"].as_array().unwrap();
    assert_eq!(submissions.len(), 2, "{listing}");
    let mut opened = Vec::new();
    for sub in submissions {
        for part in sub["parts"].as_array().unwrap() {
            let mut bytes = Vec::new();
            for c in part["chunks"].as_array().unwrap() {
                let req = Request::builder()
                    .uri(format!(
                        "/v1/spaces/{space}/drop-chunks/{}",
                        c.as_str().unwrap()
                    ))
                    .header("authorization", format!("Bearer {}", amina.unwrap()))
                    .body(Body::empty())
                    .unwrap();
                let r = api.router.clone().oneshot(req).await.unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                bytes.extend_from_slice(
                    &axum::body::to_bytes(r.into_body(), 2 << 20).await.unwrap(),
                );
            }
            assert_eq!(bytes.len() as u64, part["size"].as_u64().unwrap());
            let plain = intake::open(core::slice::from_ref(&key), &bytes, bytes.len()).unwrap();
            opened.push(Part::parse(plain).unwrap());
        }
    }
    assert!(opened.contains(&statement));
    assert!(opened.contains(&photo));
    assert!(opened.iter().any(|p| p.content == b"raw bytes from age -r"));
    assert!(
        listing["boxes"][0]["used"].as_u64().unwrap()
            == (sealed[0].len() + sealed[1].len() + by_curl.len()) as u64
    );

    // A chunk longer than its declared part is refused and not kept (a box
    // stores what it reserved, never more); a chunk named twice is refused.
    let big = vec![7u8; 1 << 20];
    let big_id = blake3::hash(&big).to_hex().to_string();
    let (s, b) = api
        .json(
            "POST",
            &declare,
            None,
            json!({ "epoch": 0, "parts": [{ "size": 10, "chunks": [big_id] }] }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = api
        .raw("PUT", &format!("/v1/drop/{dropbox}/chunks/{big_id}"), big)
        .await;
    check_error(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    let stored = |id: &str| {
        api._dir
            .path()
            .join("data/drop-chunks")
            .join(&id[..2])
            .join(id)
            .exists()
    };
    assert!(!stored(&big_id), "the refused chunk is not stored");
    // Shorter than declared: refused too.
    let small = vec![8u8; 5];
    let small_id = blake3::hash(&small).to_hex().to_string();
    let (s, b) = api
        .json(
            "POST",
            &declare,
            None,
            json!({ "epoch": 0, "parts": [{ "size": 10, "chunks": [small_id] }] }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = api
        .raw(
            "PUT",
            &format!("/v1/drop/{dropbox}/chunks/{small_id}"),
            small,
        )
        .await;
    check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");
    assert!(!stored(&small_id), "the refused chunk is not stored");

    let twice = hex::encode([5u8; 32]);
    let (s, b) = api
        .json(
            "POST",
            &declare,
            None,
            json!({ "epoch": 0, "parts": [{ "size": 2 << 20, "chunks": [twice, twice] }] }),
        )
        .await;
    check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");

    // Closed: the link answers 410 with a reason the page words. Neither
    // someone outside the space nor the same user through another space of
    // hers closes it.
    let close = format!("{boxes}/{dropbox}");
    let (s, _) = api.json("DELETE", &close, bruno, json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let other_space = "cd".repeat(16);
    let (s, _) = api
        .json(
            "POST",
            "/v1/spaces",
            amina,
            json!({ "id": other_space, "kind": "confidential" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = api
        .json(
            "DELETE",
            &format!("/v1/spaces/{other_space}/drop-boxes/{dropbox}"),
            amina,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = api.json("GET", &info, None, json!({})).await;
    assert_eq!(s, StatusCode::OK, "still open: {b}");
    // A chunk is read only through the space of its box, by its members.
    let chunk = &chunks[0].0;
    for (space_id, token) in [(&other_space, amina), (&space, bruno)] {
        let (s, _) = api
            .json(
                "GET",
                &format!("/v1/spaces/{space_id}/drop-chunks/{chunk}"),
                token,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let (s, _) = api.json("DELETE", &close, amina, json!({})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = api.json("GET", &info, None, json!({})).await;
    check_reason(s, &b, StatusCode::GONE, "drop_box_closed");
    let (s, b) = api.raw("POST", &info, by_curl).await;
    check_reason(s, &b, StatusCode::GONE, "drop_box_closed");
}

#[tokio::test]
async fn routes_without_an_account_are_limited_per_address() {
    let api = Api::with_limits(amicus_server::Limits {
        anonymous_rate_per_second: 1,
        anonymous_rate_burst: 5,
        ..amicus_server::Limits::default()
    });
    let info = format!("/v1/drop/{}", "00".repeat(16));
    let from = |address: &str| {
        let mut req = Request::builder().uri(&info).body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(amicus_server::Peer(address.parse().unwrap()));
        req
    };
    let mut limited = 0;
    for _ in 0..20 {
        let r = api
            .router
            .clone()
            .oneshot(from("192.0.2.7:4000"))
            .await
            .unwrap();
        match r.status() {
            StatusCode::NOT_FOUND => {}
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(
                    r.headers().contains_key("retry-after"),
                    "a 429 says when to come back"
                );
                limited += 1;
            }
            other => panic!("{other}"),
        }
    }
    assert!(limited >= 14, "{limited} of 20 limited");
    // The same address still reads the public library: reading and
    // submitting have an allowance each.
    let mut read = Request::builder()
        .uri("/v1/public")
        .body(Body::empty())
        .unwrap();
    read.extensions_mut()
        .insert(amicus_server::Peer("192.0.2.7:4000".parse().unwrap()));
    let r = api.router.clone().oneshot(read).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Another address is not: each has its own allowance. The addresses of
    // one IPv6 /64 are one.
    let r = api
        .router
        .clone()
        .oneshot(from("198.51.100.9:4000"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let mut v6_limited = 0;
    for host in 0..20 {
        let address = format!("[2001:db8:1:2::{host:x}]:4000");
        let r = api.router.clone().oneshot(from(&address)).await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            v6_limited += 1;
        }
    }
    assert!(v6_limited >= 14, "{v6_limited} of 20 from one /64 limited");
}

#[tokio::test]
async fn public_libraries_are_read_without_an_account_unless_the_server_says_otherwise() {
    for public_read in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data: dir.path().join("data"),
            registration: Registration::Open,
            public_read,
            ..Config::default()
        };
        let api = Api {
            router: app(open(config).unwrap()),
            _dir: dir,
        };
        let (_, token) = api.user("amina", None).await;
        let token = token.as_deref();
        let public = "0e".repeat(16);
        let confidential = "0d".repeat(16);
        for (id, kind) in [(&public, "public"), (&confidential, "confidential")] {
            let mut body = json!({ "id": id, "kind": kind });
            if kind == "public" {
                body["name"] = json!("Jurisprudence");
            }
            let (s, b) = api.json("POST", "/v1/spaces", token, body).await;
            assert!(s.is_success(), "{s} {b}");
        }
        let doc = format!("/v1/public/{public}/docs/arret-7");
        let (s, b) = api
            .json(
                "PUT",
                &doc,
                token,
                json!({ "title": "Arrêt Kabila", "body": "La détention était arbitraire." }),
            )
            .await;
        assert!(s.is_success(), "{s} {b}");
        let reads = [
            "/v1/public".to_owned(),
            format!("/v1/public/{public}/docs"),
            doc.clone(),
            "/v1/search?q=d%C3%A9tention".to_owned(),
        ];
        for uri in &reads {
            let (s, b) = api.json("GET", uri, None, Value::Null).await;
            if public_read {
                assert_eq!(s, StatusCode::OK, "{uri}: {b}");
            } else {
                check_error(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
            }
            // A token that is not a session's is refused, not read as
            // anonymous.
            let (s, b) = api.json("GET", uri, Some("forged"), Value::Null).await;
            check_error(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
        }
        if public_read {
            let (_, b) = api.json("GET", &doc, None, Value::Null).await;
            assert_eq!(b["body"], "La détention était arbitraire.");
            let (_, b) = api.json("GET", "/v1/public", None, Value::Null).await;
            assert_eq!(
                b["spaces"],
                json!([{ "id": public, "name": "Jurisprudence" }])
            );
            // A confidential space is not a public library, for anyone.
            let (s, b) = api
                .json(
                    "GET",
                    &format!("/v1/public/{confidential}/docs"),
                    None,
                    Value::Null,
                )
                .await;
            check_error(s, &b, StatusCode::NOT_FOUND, "not_found");
            // Writing still needs a role.
            let (s, b) = api
                .json("PUT", &doc, None, json!({ "title": "x", "body": "y" }))
                .await;
            check_error(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
        }
    }
}

/// Aggregates of case records for the public map (PROTOCOL §15.4): only a
/// member with a role in the public space publishes, signed by one of
/// their own devices over these very counts; a cell under its own `k`, a
/// cell twice, a name where a code goes, or `k` below 2 is refused with
/// nothing written; anyone reads them without an account; another
/// contributor neither replaces nor withdraws them; a space without any
/// answers an empty list.
#[tokio::test]
async fn aggregates_are_counts_signed_by_their_publisher_and_read_by_anyone() {
    use amicus_core::monitoring::{Aggregate, Cell, Dim, aggregate_message};
    let api = Api::new(Registration::Open);
    let (_, amina, token) = api.account_device("amina", None).await.unwrap();
    let (_, bruno, bruno_token) = api.account_device("bruno", None).await.unwrap();
    let public = "0c".repeat(16);
    let (s, b) = api
        .json(
            "POST",
            "/v1/spaces",
            Some(&token),
            json!({ "id": public, "kind": "public", "name": "Observatoire" }),
        )
        .await;
    assert!(s.is_success(), "{s} {b}");
    let space = amicus_core::SpaceId::from_hex(&public).unwrap();
    let list = format!("/v1/public/{public}/aggregates");
    let (s, b) = api.json("GET", &list, None, Value::Null).await;
    assert_eq!((s, b), (StatusCode::OK, json!({ "aggregates": [] })));

    let counts = |cells: Vec<(&str, &str, u32)>, k: u32| Aggregate {
        title: "Violations 2024–2025".into(),
        dims: vec![Dim::Country, Dim::Year],
        k,
        cells: cells
            .into_iter()
            .map(|(c, y, n)| Cell {
                values: vec![c.into(), y.into()],
                count: n,
            })
            .collect(),
        suppressed: 1,
    };
    // The counts come from the register of a confidential space Amina's
    // device is in.
    let source = "0b".repeat(16);
    let (s, b) = api
        .json(
            "POST",
            "/v1/spaces",
            Some(&token),
            json!({ "id": source, "kind": "confidential" }),
        )
        .await;
    assert!(s.is_success(), "{s} {b}");
    let register =
        amicus_core::monitoring::stream(amicus_core::SpaceId::from_hex(&source).unwrap()).to_hex();
    let heads = vec!["cc".repeat(32)];
    let signed_as = |id: &str,
                     source: &str,
                     stream: &str,
                     signer: &amicus_core::identity::Device,
                     signed: &Aggregate,
                     sent: &Aggregate| {
        let message = aggregate_message(space, id, signed, source, stream, &heads);
        json!({
            "aggregate": sent,
            "provenance": {
                "source_space": source,
                "source_stream": stream,
                "heads": heads,
                "device": signer.id().to_hex(),
                "signature": hex::encode(signer.sign_statement(Statement::Aggregate, &message)),
            },
        })
    };
    let (stream, source_ref) = (register.clone(), source.clone());
    let sign = |signer: &amicus_core::identity::Device, signed: &Aggregate, sent: &Aggregate| {
        let (source, stream) = (&source_ref, &stream);
        let message = aggregate_message(space, "carte", signed, source, stream, &heads);
        json!({
            "aggregate": sent,
            "provenance": {
                "source_space": source,
                "source_stream": stream,
                "heads": heads,
                "device": signer.id().to_hex(),
                "signature": hex::encode(signer.sign_statement(Statement::Aggregate, &message)),
            },
        })
    };
    let good = counts(vec![("FR", "2024", 2), ("TN", "2025", 2)], 2);
    let uri = format!("{list}/carte");
    for (body, who) in [
        // Signed over other counts.
        (
            sign(&amina, &counts(vec![("FR", "2024", 9)], 2), &good),
            &token,
        ),
        // By a device that is not the caller's.
        (sign(&bruno, &good, &good), &token),
        // A cell under its own k, a cell twice, a name for a country, k = 1.
        (
            sign(
                &amina,
                &counts(vec![("FR", "2024", 1)], 2),
                &counts(vec![("FR", "2024", 1)], 2),
            ),
            &token,
        ),
        (
            sign(
                &amina,
                &counts(vec![("FR", "2024", 2), ("FR", "2024", 2)], 2),
                &counts(vec![("FR", "2024", 2), ("FR", "2024", 2)], 2),
            ),
            &token,
        ),
        (
            sign(
                &amina,
                &counts(vec![("Selma Haddad", "2024", 3)], 2),
                &counts(vec![("Selma Haddad", "2024", 3)], 2),
            ),
            &token,
        ),
        (
            sign(
                &amina,
                &counts(vec![("FR", "2024", 3)], 1),
                &counts(vec![("FR", "2024", 3)], 1),
            ),
            &token,
        ),
    ] {
        let (s, b) = api.json("PUT", &uri, Some(who), body).await;
        check_error(s, &b, StatusCode::BAD_REQUEST, "bad_request");
        let (s, _) = api.json("GET", &uri, None, Value::Null).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "written after a refusal: {b}");
    }
    // Not the register of a space the caller is in, or another stream.
    for body in [
        signed_as("carte", &"0a".repeat(16), &register, &amina, &good, &good),
        signed_as("carte", &source, &"bb".repeat(16), &amina, &good, &good),
    ] {
        let (s, b) = api.json("PUT", &uri, Some(&token), body).await;
        assert!(s.is_client_error(), "{s} {b}");
        let (s, _) = api.json("GET", &uri, None, Value::Null).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    // Bruno has no role in the public space.
    let (s, b) = api
        .json("PUT", &uri, Some(&bruno_token), sign(&bruno, &good, &good))
        .await;
    check_reason(s, &b, StatusCode::FORBIDDEN, "no_public_role");

    let (s, b) = api
        .json("PUT", &uri, Some(&token), sign(&amina, &good, &good))
        .await;
    assert!(s.is_success(), "{s} {b}");
    let (s, b) = api.json("GET", &list, None, Value::Null).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["aggregates"][0]["id"], "carte");
    assert_eq!(b["aggregates"][0]["author"], "amina");
    assert!(
        b["aggregates"][0].get("aggregate").is_none(),
        "the list carries no cells"
    );
    let (s, b) = api.json("GET", &uri, None, Value::Null).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b["aggregate"]["cells"][1],
        json!({ "values": ["TN", "2025"], "count": 2 })
    );
    assert_eq!(b["provenance"]["device"], amina.id().to_hex());
    // What was stored verifies as it was signed.
    let stored: amicus_core::monitoring::PublishedAggregate = serde_json::from_value(
        json!({ "aggregate": b["aggregate"], "provenance": b["provenance"] }),
    )
    .unwrap();
    stored.verify(space, "carte", amina.certificate()).unwrap();

    // The same register published again under another id is refused: the
    // two could be subtracted one from the other.
    let other = format!("{list}/carte-par-pays");
    let by_country = Aggregate {
        dims: vec![Dim::Country],
        cells: vec![Cell {
            values: vec!["FR".into()],
            count: 3,
        }],
        ..good.clone()
    };
    let (s, b) = api
        .json(
            "PUT",
            &other,
            Some(&token),
            signed_as(
                "carte-par-pays",
                &source,
                &register,
                &amina,
                &by_country,
                &by_country,
            ),
        )
        .await;
    check_reason(s, &b, StatusCode::CONFLICT, "already_published");
    let (s, _) = api.json("GET", &other, None, Value::Null).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Bruno, a contributor now, neither replaces nor withdraws Amina's.
    let (s, b) = api
        .json(
            "PUT",
            &format!("/v1/spaces/{public}/roles/bruno"),
            Some(&token),
            json!({ "role": "contributor" }),
        )
        .await;
    assert!(s.is_success(), "{s} {b}");
    let (s, b) = api
        .json("PUT", &uri, Some(&bruno_token), sign(&bruno, &good, &good))
        .await;
    check_reason(s, &b, StatusCode::FORBIDDEN, "not_publisher");
    let (s, b) = api
        .json("DELETE", &uri, Some(&bruno_token), Value::Null)
        .await;
    check_reason(s, &b, StatusCode::FORBIDDEN, "not_publisher");
    let (s, _) = api.json("DELETE", &uri, Some(&token), Value::Null).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = api.json("GET", &list, None, Value::Null).await;
    assert_eq!((s, b), (StatusCode::OK, json!({ "aggregates": [] })));
}

/// Stores `data` as a drop box's chunk; returns its id.
async fn drop_chunk(state: &amicus_server::state::AppState, data: Vec<u8>) -> [u8; 32] {
    let id = amicus_server::blobs::BlobId(*blake3::hash(&data).as_bytes());
    let length = data.len();
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(data))]);
    state
        .drop_blobs
        .put(&id, body, length, |_| Ok(()), |_| {})
        .await
        .unwrap();
    id.0
}

/// The server's sweep (when it starts, then hourly) deletes what witnesses
/// sent that no member will ever read, without waiting for the box's next
/// submission: a submission still unfinished after a day (its bytes given
/// back to the box) with its chunks, and chunks no submission names (a
/// server stopped during an upload leaves them). It keeps complete
/// submissions and recent unfinished ones with their chunks, and leaves
/// unnamed chunks alone while an upload is under way.
#[tokio::test]
async fn the_sweep_deletes_what_witnesses_sent_that_no_member_will_read() {
    use amicus_server::blobs::BlobId;
    use amicus_server::drop::{Swept, sweep};
    use amicus_server::store::{DropBoxRecord, PartRecord, SubmissionRecord};

    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data: dir.path().join("data"),
        ..Config::default()
    };
    let state = open(config).unwrap();
    let now = amicus_server::state::now();
    let dropbox = [3u8; 16];
    let (complete, old, recent, orphan, shared) = (
        drop_chunk(&state, vec![1; 100]).await,
        drop_chunk(&state, vec![2; 100]).await,
        drop_chunk(&state, vec![3; 100]).await,
        drop_chunk(&state, vec![4; 100]).await,
        drop_chunk(&state, vec![5; 100]).await,
    );
    // Another box, whose complete submission holds a chunk that a stale
    // declaration of the first box names too.
    let other = [4u8; 16];
    for (id, used) in [(dropbox, 400), (other, 100)] {
        state
            .store
            .create_drop_box(
                id,
                &DropBoxRecord {
                    space: amicus_core::SpaceId([9; 16]),
                    created_by: UserId::new("amina").unwrap(),
                    created: now - 3 * 86_400,
                    expires: now + 86_400,
                    quota: 1 << 20,
                    used,
                    closed: None,
                },
            )
            .unwrap();
    }
    let submission = |at: u64, chunk: [u8; 32], complete: bool| SubmissionRecord {
        at,
        epoch: 0,
        parts: vec![PartRecord {
            size: 100,
            chunks: vec![chunk],
        }],
        complete,
    };
    let two_days_ago = now - 2 * 86_400;
    for (id, sid, record) in [
        (dropbox, [1u8; 16], submission(two_days_ago, complete, true)),
        (dropbox, [2u8; 16], submission(two_days_ago, old, false)),
        (dropbox, [3u8; 16], submission(now - 60, recent, false)),
        (dropbox, [4u8; 16], submission(two_days_ago, shared, false)),
        (other, [5u8; 16], submission(two_days_ago, shared, true)),
    ] {
        state.store.put_submission(id, sid, Some(&record)).unwrap();
    }
    let stored = |c: [u8; 32]| state.drop_blobs.path(&BlobId(c)).exists();

    // An upload under way: the old submission goes, every chunk but its
    // own stays.
    let uploading = state.drop_uploads.read().await;
    assert_eq!(
        sweep(&state).unwrap(),
        Swept {
            submissions: 2,
            chunks: 0,
            chunks_swept: false
        }
    );
    drop(uploading);
    let kept: Vec<[u8; 16]> = state
        .store
        .submissions(dropbox)
        .unwrap()
        .into_iter()
        .map(|(sid, _)| sid)
        .collect();
    assert_eq!(kept, vec![[1u8; 16], [3u8; 16]]);
    assert_eq!(state.store.drop_box(dropbox).unwrap().unwrap().used, 200);
    assert!(!stored(old), "the unfinished submission's chunk is deleted");
    assert!(
        stored(shared),
        "a chunk another box's complete submission holds is kept"
    );
    assert!(stored(orphan), "left while an upload is under way");
    assert!(stored(complete) && stored(recent));

    // None under way: the chunk no submission names goes too.
    assert_eq!(
        sweep(&state).unwrap(),
        Swept {
            submissions: 0,
            chunks: 1,
            chunks_swept: true
        }
    );
    assert!(!stored(orphan));
    assert!(stored(complete) && stored(recent) && stored(shared));
    // Nothing more to do.
    assert_eq!(
        sweep(&state).unwrap(),
        Swept {
            submissions: 0,
            chunks: 0,
            chunks_swept: true
        }
    );
}
