//! `rediss://`: the gateway caches through a TLS connection to a real `redis-server` that
//! listens with a certificate of a private CA made by the test (`openssl`), and trusts it
//! through `SSL_CERT_FILE`. A server whose certificate it cannot verify is a store that is
//! down: requests are proxied, never failed.

use std::path::Path;
use std::process::Command;

use larder_tests::gateway::{Harness, StoreKind};
use larder_tests::http;
use larder_tests::origin::OriginConfig;
use larder_tests::redis_server::{RedisServer, quiet_port};

/// A CA, and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl must be installed");
        assert!(
            status.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=larder test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
}

fn tls_redis(dir: &Path, tls_port: u16) -> RedisServer {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    RedisServer::start_with(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &path("server.pem"),
        "--tls-key-file",
        &path("server.key"),
        "--tls-ca-cert-file",
        &path("ca.pem"),
        "--tls-auth-clients",
        "no",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_caches_over_tls_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    // SAFETY of the test: this test binary runs only this test, so no other thread reads the
    // environment while it is set.
    unsafe_set_env("SSL_CERT_FILE", &certs.path().join("ca.pem"));
    let tls_port = quiet_port();
    let redis = tls_redis(certs.path(), tls_port);
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let h = Harness::demo(StoreKind::Redis(url), OriginConfig::zero_delay()).await;

    let path = "/api/v1/repositories/3";
    assert!(h.get(path).await.cache_status().contains("stored"));
    assert!(h.get(path).await.is_hit());
    assert_eq!(h.upstream_gets(path), 1);
    // The entry is in that Redis (read back over its plain port).
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("larder:obj:*")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let health = http::get(&h.admin("/health")).await.json();
    assert_eq!(health["store"]["up"], true, "{health}");
    h.stop().await;

    // The same server, trusted by nobody: every request is proxied, the store reports down.
    unsafe_set_env("SSL_CERT_FILE", Path::new("/nonexistent/ca.pem"));
    let h = Harness::demo_without_waiting(
        StoreKind::Redis(format!("rediss://127.0.0.1:{tls_port}")),
        OriginConfig::zero_delay(),
    )
    .await;
    for _ in 0..3 {
        let r = h.get(path).await;
        assert_eq!(r.status, 200);
        assert!(!r.is_hit());
    }
    let health = http::get(&h.admin("/health")).await.json();
    assert_eq!(health["store"]["up"], false, "{health}");
    h.stop().await;
}

#[allow(unsafe_code)]
fn unsafe_set_env(name: &str, value: &Path) {
    // SAFETY: see the caller; the gateway reads SSL_CERT_FILE when it opens a TLS connection.
    unsafe { std::env::set_var(name, value) };
}
