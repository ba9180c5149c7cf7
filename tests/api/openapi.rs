//! `GET /openapi.json` and `GET /docs`: the document describes exactly the routes the server
//! serves, every reference in it resolves, every error it describes is a problem, the shapes it
//! gives match what the server sends, and the browsable UI is served from the binary.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::StatusCode;
use serde_json::{json, Value};
use surge::auth::Role;

use crate::helpers::{assert_problem, spawn_app, Backend, TestApp};

/// Every route of API v1 that the server serves, as API.md lists them (under `/api/v1`).
/// What API.md lists as not served yet is not documented either.
const SERVED: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("post", "/auth/register"),
    ("post", "/auth/login"),
    ("post", "/auth/refresh"),
    ("post", "/auth/logout"),
    ("get", "/auth/me"),
    ("post", "/admin/users/{id}/roles"),
    ("post", "/stock-items"),
    ("get", "/stock-items/{sku}"),
    ("post", "/stock-items/{sku}/adjustments"),
    ("get", "/stock-items/{sku}/movements"),
    ("post", "/orders"),
    ("get", "/orders"),
    ("get", "/orders/{id}"),
    ("post", "/orders/{id}/cancel"),
    ("post", "/orders/{id}/pay"),
    ("post", "/products"),
    ("get", "/products/{id}"),
    ("post", "/time-sales"),
    ("get", "/time-sales"),
    ("get", "/time-sales/{id}"),
    ("post", "/time-sales/{id}/purchase"),
    ("post", "/time-sales/{id}/queue/join"),
    ("get", "/time-sales/{id}/queue/me"),
    ("get", "/time-sales/{id}/queue"),
    ("patch", "/time-sales/{id}/queue"),
    ("post", "/coupon-policies"),
    ("get", "/coupon-policies"),
    ("get", "/coupon-policies/{id}"),
    ("post", "/coupon-policies/{id}/issue"),
    ("get", "/coupons"),
    ("get", "/coupons/{id}"),
    ("post", "/coupons/{id}/use"),
    ("post", "/coupons/{id}/cancel"),
    ("get", "/wallets/me"),
    ("get", "/wallets/{user_id}"),
    ("post", "/wallets/{user_id}/earn"),
    ("post", "/wallets/me/use"),
    ("post", "/wallets/me/charge"),
    ("post", "/wallets/{user_id}/transactions/{tx_id}/cancel"),
    ("get", "/wallets/me/transactions"),
    ("get", "/wallets/{user_id}/transactions"),
    ("post", "/events"),
    ("get", "/events"),
    ("get", "/events/{id}"),
    ("get", "/events/{id}/seats"),
    ("post", "/events/{id}/holds"),
    ("post", "/events/{id}/check-in"),
    ("post", "/events/{id}/queue/join"),
    ("get", "/events/{id}/queue/me"),
    ("get", "/events/{id}/queue"),
    ("patch", "/events/{id}/queue"),
    ("get", "/admin"),
    ("get", "/admin/overview"),
    ("get", "/admin/actors"),
    ("get", "/admin/actors/{kind}/{id}"),
    ("post", "/admin/actors/{kind}/{id}/{action}"),
    ("get", "/admin/supervision"),
    ("get", "/admin/sagas"),
    ("get", "/ws"),
];

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

pub(crate) async fn document(app: &TestApp, url: String) -> Value {
    let response = app.client.get(url).send().await.expect("request is sent");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("the document is JSON")
}

/// (method, path) -> operation, for every operation in the document.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut found = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                found.insert((method.to_string(), path.clone()), operation.clone());
            }
        }
    }
    found
}

/// Every `$ref` anywhere under `value`.
fn refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => found.push(target.clone()),
                    _ => refs(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|inner| refs(inner, found)),
        _ => {}
    }
}

pub(crate) fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name}");
    schema
}

pub(crate) fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .expect("an object schema")
        .keys()
        .cloned()
        .collect()
}

pub(crate) fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .expect("a JSON object")
        .keys()
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_the_routes_api_md_lists_and_the_router_serves() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let doc = document(&app, format!("{}/openapi.json", app.base)).await;
    assert_eq!(
        doc,
        document(&app, app.url("/openapi.json")).await,
        "the same document at the root and under /api/v1"
    );
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["servers"][0]["url"], "/api/v1");

    let documented: BTreeSet<(String, String)> = operations(&doc).into_keys().collect();
    let served: BTreeSet<(String, String)> = SERVED
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "in API.md's list, not documented: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "documented, not in API.md's list: {unserved:?}"
    );

    // Each documented route is routed: a request with made-up ids reaches a handler, whatever
    // that handler then answers; an unrouted one gets 405 or the "no such route" problem.
    let admin = app.token("admin-1", Role::Admin);
    let unknown_id = "0192f0c4-0000-7000-8000-000000000000";
    for (method, path) in &documented {
        let concrete = path
            .replace("{sku}", "NOPE")
            .replace("{kind}", "stock_item")
            .replace("{action}", "snapshot")
            .replace("{user_id}", "user-1")
            .replace("{tx_id}", "user-1.0000000001")
            .replace("{id}", unknown_id);
        let request = match method.as_str() {
            "get" => app.client.get(app.url(&concrete)),
            "post" => app.client.post(app.url(&concrete)).json(&json!({})),
            "patch" => app.client.patch(app.url(&concrete)).json(&json!({})),
            other => panic!("no request for {other}"),
        };
        let response = request.bearer_auth(&admin).send().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {concrete}"
        );
        assert!(
            !body.contains("no such route"),
            "{method} {concrete} is not routed: {status} {body}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reference_resolves_and_every_error_is_a_problem() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let doc = document(&app, format!("{}/openapi.json", app.base)).await;
    let mut targets = Vec::new();
    refs(&doc, &mut targets);
    assert!(!targets.is_empty());
    for target in &targets {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("a reference outside the schemas: {target}"));
        schema(&doc, name);
    }

    let mut operation_ids = BTreeSet::new();
    for ((method, path), operation) in operations(&doc) {
        let id = operation["operationId"].as_str().unwrap().to_string();
        assert!(operation_ids.insert(id.clone()), "operationId {id} twice");
        assert!(
            operation["tags"][0].is_string(),
            "{method} {path} has no tag"
        );
        assert!(
            operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{method} {path} has no summary"
        );
        let responses = operation["responses"].as_object().unwrap();
        assert!(
            responses
                .keys()
                .any(|status| status.starts_with('2') || status == "101"),
            "{method} {path} documents no success"
        );
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let content = response["content"].as_object().unwrap();
                assert_eq!(
                    content.keys().collect::<Vec<_>>(),
                    ["application/problem+json"],
                    "{method} {path} {status}"
                );
                assert_eq!(
                    content["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem"
                );
            }
        }
        // The roles the bearer requirement names agree with who the 403 says is refused.
        let roles: BTreeSet<String> = operation["security"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|requirement| requirement["bearer"].as_array())
            .flatten()
            .map(|role| role.as_str().unwrap().to_string())
            .collect();
        let forbidden = responses
            .get("403")
            .and_then(|r| r["description"].as_str())
            .unwrap_or("");
        let expected: &[&str] = if forbidden.contains("not an admin") {
            &["admin"]
        } else if forbidden.contains("not an operator") {
            &["admin", "operator"]
        } else {
            &[]
        };
        let expected: BTreeSet<String> = expected.iter().map(|r| r.to_string()).collect();
        assert_eq!(roles, expected, "{method} {path}: roles against its 403");
        let secured = operation["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty());
        assert!(
            !secured || responses.contains_key("401"),
            "{method} {path} takes a token and documents no 401 for a bad one"
        );
    }
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn described_shapes_match_what_the_server_sends() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let doc = document(&app, format!("{}/openapi.json", app.base)).await;

    // A problem, with and without field errors.
    let missing: Value = app
        .get("/stock-items/NOPE", &app.operator())
        .await
        .json()
        .await
        .unwrap();
    let problem = schema(&doc, "Problem");
    let mut without_errors = property_names(problem);
    without_errors.remove("errors");
    assert_eq!(keys(&missing), without_errors);
    let invalid = app
        .post(
            "/stock-items",
            &app.operator(),
            json!({"sku": "!", "name": "x", "on_hand": -1}),
            None,
        )
        .await;
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let invalid: Value = invalid.json().await.unwrap();
    assert_eq!(keys(&invalid), property_names(problem));
    assert_eq!(
        keys(&invalid["errors"][0]),
        property_names(schema(&doc, "ProblemField"))
    );
    for field in problem["required"].as_array().unwrap() {
        assert!(missing.get(field.as_str().unwrap()).is_some(), "{field}");
    }

    // A resource, a list page, an order and the documented request body it came from.
    let item = app.create_stock("DOC-1", 5).await;
    assert_eq!(keys(&item), property_names(schema(&doc, "StockView")));
    let order = app.order("buyer-1", "DOC-1", 1, None).await;
    assert_eq!(order.status(), StatusCode::CREATED);
    let order: Value = order.json().await.unwrap();
    // `tickets` only on a confirmed event order (tests/api/tickets.rs checks that shape).
    let mut without_tickets = property_names(schema(&doc, "OrderView"));
    without_tickets.remove("tickets");
    assert_eq!(keys(&order), without_tickets);
    assert_eq!(
        property_names(schema(&doc, "PlaceOrder")),
        BTreeSet::from(["items".to_string()])
    );
    let page: Value = app
        .get("/orders", &app.token("buyer-1", Role::Customer))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keys(&page), property_names(schema(&doc, "Page_OrderView")));
    assert_eq!(keys(&page["items"][0]), keys(&order));

    // A hand-described answer: the waiting room's ticket (pass fields only when admitted).
    let event_room = format!("/events/{}/queue/join", create_event(&app).await);
    let ticket = app
        .post(
            &event_room,
            &app.token("fan-1", Role::Customer),
            json!({}),
            None,
        )
        .await;
    assert_eq!(ticket.status(), StatusCode::CREATED);
    let ticket: Value = ticket.json().await.unwrap();
    let described = property_names(schema(&doc, "Ticket"));
    assert!(
        keys(&ticket).is_subset(&described),
        "{ticket} vs {described:?}"
    );
    let required: BTreeSet<String> = schema(&doc, "Ticket")["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert!(
        required.is_subset(&keys(&ticket)),
        "{ticket} lacks {required:?}"
    );
    app.stop().await;
}

async fn create_event(app: &TestApp) -> String {
    let body = json!({
        "name": "Doc night", "venue": "Hall", "starts_at": "2030-01-01T19:00:00Z",
        "sections": [{"name": "A", "rows": [{"name": "1", "seats": 4, "price": 100}]}],
    });
    let response = app.post("/events", &app.operator(), body, None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let event: Value = response.json().await.unwrap();
    event["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_is_served_from_the_binary() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    for base in [app.base.clone(), format!("{}/api/v1", app.base)] {
        let page = app.client.get(format!("{base}/docs")).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(
            page.url().as_str(),
            format!("{base}/docs/"),
            "redirected to the page"
        );
        assert!(page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(page.text().await.unwrap().contains("swagger-ui"));
        let init = app
            .client
            .get(format!("{base}/docs/swagger-initializer.js"))
            .send()
            .await
            .unwrap();
        assert_eq!(init.status(), StatusCode::OK);
        assert!(init.text().await.unwrap().contains("/openapi.json"));
        let script = app
            .client
            .get(format!("{base}/docs/swagger-ui-bundle.js"))
            .send()
            .await
            .unwrap();
        assert_eq!(script.status(), StatusCode::OK);
        assert!(
            script.bytes().await.unwrap().len() > 100_000,
            "the UI's own script"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_path_with_another_method_is_405_with_allow() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let admin = app.token("admin-1", Role::Admin);
    let cases = [
        (
            reqwest::Method::DELETE,
            app.url("/orders"),
            "GET, HEAD, POST",
        ),
        (reqwest::Method::GET, app.url("/orders/x/cancel"), "POST"),
        (
            reqwest::Method::PUT,
            app.url("/time-sales/x/queue"),
            "GET, HEAD, PATCH",
        ),
        (
            reqwest::Method::POST,
            format!("{}/healthz", app.base),
            "GET, HEAD",
        ),
    ];
    for (method, url, allow) in cases {
        let response = app
            .client
            .request(method.clone(), &url)
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], allow, "{method} {url}");
        assert_problem(
            response,
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
        )
        .await;
    }
    // HEAD where only POST is served: 405 too, with the headers and no body.
    let response = app
        .client
        .head(app.url("/orders/x/cancel"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    assert!(response.bytes().await.unwrap().is_empty());
    for url in [app.url("/nothing"), format!("{}/orders", app.base)] {
        let response = app.client.delete(&url).send().await.unwrap();
        assert_problem(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    }
    app.stop().await;
}

/// The actor list's `kind` and `status` filters name their values, and the kinds are exactly
/// the ones the server runs (as `GET /admin/overview` reports them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actor_filters_list_the_kinds_and_statuses_the_server_has() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let doc = document(&app, format!("{}/openapi.json", app.base)).await;
    let list = &operations(&doc)[&("get".to_string(), "/admin/actors".to_string())];
    let values = |name: &str| -> Vec<String> {
        let param = list["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("a {name} parameter"));
        assert_eq!(param["required"], json!(false), "{name} is optional");
        param["schema"]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} lists its values: {param}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let overview: Value = app
        .get("/admin/overview", &app.operator())
        .await
        .json()
        .await
        .unwrap();
    let kinds: Vec<String> = overview["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .map(|k| k["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(values("kind"), kinds, "the kinds, in the console's order");
    assert_eq!(values("status"), ["running", "parked", "failed"]);
    let unknown = app.get("/admin/actors?kind=ghost", &app.operator()).await;
    assert_problem(
        unknown,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    app.stop().await;
}

/// HEAD is answered wherever GET is (RFC 9110): the same status and headers, no body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_get_route_answers_head_like_get_without_a_body() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let doc = document(&app, format!("{}/openapi.json", app.base)).await;
    let admin = app.token("admin-1", Role::Admin);
    app.create_stock("HEAD-1", 5).await;
    let order: Value = app
        .order("hana", "HEAD-1", 1, None)
        .await
        .json()
        .await
        .unwrap();
    let order_path = format!("/orders/{}", order["id"].as_str().unwrap());
    let mut urls: Vec<String> = operations(&doc)
        .into_keys()
        .filter(|(method, _)| method == "get")
        .map(|(_, path)| app.url(&path.replace('{', "x-").replace('}', "")))
        .collect();
    urls.push(format!("{}/healthz", app.base));
    for url in urls {
        let get = app
            .client
            .get(&url)
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        let head = app
            .client
            .head(&url)
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), get.status(), "HEAD {url}");
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "HEAD {url}"
        );
        assert!(head.bytes().await.unwrap().is_empty(), "HEAD {url}");
    }
    // A stable resource: HEAD announces the length GET sends, and sends nothing after its
    // headers. Read off the socket: an HTTP client drops whatever follows a HEAD's headers.
    let get = app.get(&order_path, &admin).await;
    assert_eq!(get.status(), StatusCode::OK);
    let length = get.bytes().await.unwrap().len();
    let bearer = format!("Bearer {admin}");
    let (head, rest) = raw_head(
        &app,
        &app.url(&order_path),
        "",
        &[("authorization", &bearer)],
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("content-length: {length}\r\n")),
        "{head}"
    );
    assert!(rest.is_empty(), "a body after HEAD's headers: {rest:?}");
    let (head, rest) = raw_head(&app, &format!("{}/healthz", app.base), "close", &[]).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(rest.is_empty(), "a body after HEAD's headers: {rest:?}");
    // A WebSocket handshake must be a GET: as a HEAD it is refused, not upgraded.
    let (head, _) = raw_head(
        &app,
        &app.url("/ws"),
        "Upgrade",
        &[
            ("authorization", &bearer),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    )
    .await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
    app.stop().await;
}

/// Sends `HEAD url` over a fresh connection with the `Connection` header given; returns the
/// header block of the answer (lower-cased) and, with `Connection: close`, every byte the server
/// sent after it until it closed the connection.
async fn raw_head(
    app: &TestApp,
    url: &str,
    connection: &str,
    headers: &[(&str, &str)],
) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = app.base.trim_start_matches("http://");
    let path = url.trim_start_matches(&app.base);
    let mut request = format!("HEAD {path} HTTP/1.1\r\nhost: {authority}\r\n");
    request.push_str(&format!("connection: {connection}\r\n"));
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let header_end = |answer: &[u8]| answer.windows(4).position(|w| w == b"\r\n\r\n");
    let mut answer = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            answer.extend_from_slice(&chunk[..n]);
            let complete = header_end(&answer).is_some();
            if n == 0 || (complete && connection != "close") {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("the server answers, and closes a connection: close");
    let end = header_end(&answer).expect("a header block") + 4;
    let head = String::from_utf8_lossy(&answer[..end]).to_lowercase();
    (head, answer[end..].to_vec())
}

/// Every documented path, asked with a method it does not list, answers 405 problem+json with
/// exactly the documented methods in `Allow`: the router and the document agree on methods too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_path_refuses_other_methods_with_its_allow_list() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let doc = document(&app, format!("{}/openapi.json", app.base)).await;
    let mut by_path: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (method, path) in operations(&doc).into_keys() {
        by_path
            .entry(path)
            .or_default()
            .insert(method.to_uppercase());
    }
    let admin = app.token("admin-1", Role::Admin);
    for (path, methods) in by_path {
        let concrete = path.replace('{', "x-").replace('}', "");
        let other = ["DELETE", "PUT", "PATCH", "POST", "GET"]
            .into_iter()
            .find(|m| !methods.contains(*m))
            .expect("some method is not served");
        let response = app
            .client
            .request(other.parse().unwrap(), app.url(&concrete))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        // HEAD is served wherever GET is, without being a documented operation of its own.
        let mut allowed = methods.clone();
        if methods.contains("GET") {
            allowed.insert("HEAD".to_string());
        }
        let allow = allowed.into_iter().collect::<Vec<_>>().join(", ");
        assert_eq!(
            response.headers().get("allow").map(|v| v.to_str().unwrap()),
            Some(allow.as_str()),
            "{other} {concrete}"
        );
        assert_problem(
            response,
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
        )
        .await;
    }
    app.stop().await;
}

/// The document's `maxLength`s count characters, and so do the handlers: a name of 200 Hangul
/// syllables (600 bytes) is taken, one of 201 is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_lengths_count_characters_not_bytes() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let doc = document(&app, format!("{}/openapi.json", app.base)).await;
    let described = &schema(&doc, "CreateProduct")["properties"]["name"]["maxLength"];
    assert_eq!(described, 200);
    for (length, status) in [
        (200, StatusCode::CREATED),
        (201, StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let name = "가".repeat(length);
        let body = json!({"name": name, "price": 1000});
        let response = app.post("/products", &app.operator(), body, None).await;
        assert_eq!(response.status(), status, "{length} characters");
    }
    app.stop().await;
}
