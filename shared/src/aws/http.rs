//! One HTTPS client for the whole process. The AWS SDK clients and the Twilio adapter share its
//! connection pool and its TLS configuration, built once in `main`.
//!
//! The trusted roots are Mozilla's, compiled in (`webpki-roots`) as ready trust anchors: a cold
//! start reads no certificate files and parses no certificates. The SDK's own client and reqwest's
//! platform verifier each read and parse the system's whole certificate store at start-up, which
//! cost most of a function's init time. The roots' set changes when the crate is updated, the
//! same cadence as the rest of the TLS stack. Where a network re-signs TLS with its own authority
//! (a corporate proxy), `SSL_CERT_FILE` names a PEM file whose certificates are trusted as well,
//! as OpenSSL does; Lambda sets no such variable.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::shared::IntoShared;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The AWS SDK's default connect timeout, for every connection this client opens.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// The process's client; clones share one pool.
///
/// A pooled connection is driven by a task of the runtime that opened it, so the pool is only
/// sound within one runtime: a function's `main` has one. A process that starts a runtime per
/// test builds a client per runtime with [`build`] instead.
pub fn client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(build).clone()
}

/// A new client with its own pool and the same TLS configuration as [`client`].
pub fn build() -> reqwest::Client {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
        match CertificateDer::pem_file_iter(&path) {
            Ok(certs) => {
                let (added, ignored) = roots.add_parsable_certificates(certs.flatten());
                tracing::debug!(added, ignored, "roots from SSL_CERT_FILE");
            }
            Err(error) => tracing::warn!(%error, ?path, "SSL_CERT_FILE cannot be read"),
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("aws-lc-rs supports TLS 1.2 and 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        // The SDK reads redirects itself, and Twilio's REST API answers without them.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client with a ready TLS configuration builds")
}

/// The process's client as the AWS SDK's HTTP client (`aws_config::ConfigLoader::http_client`).
pub fn sdk_client() -> SharedHttpClient {
    sdk_client_over(client())
}

/// The given client as the AWS SDK's HTTP client.
pub fn sdk_client_over(http: reqwest::Client) -> SharedHttpClient {
    SdkHttpClient(http).into_shared()
}

#[derive(Debug, Clone)]
struct SdkHttpClient(reqwest::Client);

impl HttpClient for SdkHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SdkConnector {
            http: self.0.clone(),
            read_timeout: settings.read_timeout(),
        }
        .into_shared()
    }
}

#[derive(Debug)]
struct SdkConnector {
    http: reqwest::Client,
    read_timeout: Option<Duration>,
}

impl HttpConnector for SdkConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (http, read_timeout) = (self.http.clone(), self.read_timeout);
        HttpConnectorFuture::new(async move { send(&http, request, read_timeout).await })
    }
}

async fn send(
    http: &reqwest::Client,
    request: HttpRequest,
    read_timeout: Option<Duration>,
) -> Result<HttpResponse, ConnectorError> {
    let (parts, body) = request
        .try_into_http1x()
        .map_err(|e| ConnectorError::user(e.into()))?
        .into_parts();
    // Every operation this service calls has its body in memory.
    let body = body.bytes().map(Bytes::copy_from_slice).ok_or_else(|| {
        ConnectorError::user("a streaming request body cannot be sent by this client".into())
    })?;
    let mut outgoing = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body);
    if let Some(timeout) = read_timeout {
        outgoing = outgoing.timeout(timeout);
    }
    let response = outgoing.send().await.map_err(connector_error)?;
    let (status, headers) = (response.status(), response.headers().clone());
    let body = response.bytes().await.map_err(connector_error)?;
    let mut answer = http::Response::new(SdkBody::from(body));
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    HttpResponse::try_from(answer).map_err(|e| ConnectorError::other(e.into(), None))
}

/// Sorts reqwest's failures the way the SDK's retry strategy reads them: timeouts and broken
/// connections are retried, anything else is not.
fn connector_error(error: reqwest::Error) -> ConnectorError {
    if error.is_timeout() {
        ConnectorError::timeout(error.into())
    } else if error.is_connect() || error.is_request() || error.is_body() {
        ConnectorError::io(error.into())
    } else {
        ConnectorError::other(error.into(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn connector() -> SdkConnector {
        SdkConnector {
            http: build(),
            read_timeout: None,
        }
    }

    fn request(uri: &str, body: &'static str) -> HttpRequest {
        let request = http::Request::builder()
            .method("POST")
            .uri(uri)
            .header("x-amz-target", "DynamoDB_20120810.PutItem")
            .body(SdkBody::from(body))
            .unwrap();
        HttpRequest::try_from(request).unwrap()
    }

    /// Answers one request with `reply` and hands back what it received.
    async fn one_shot(reply: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handle = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            let mut buf = [0; 4096];
            while !String::from_utf8_lossy(&received).contains("{\"Item\":1}") {
                let n = stream.read(&mut buf).await.unwrap();
                received.extend_from_slice(&buf[..n]);
            }
            stream.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8(received).unwrap()
        });
        (base, handle)
    }

    #[tokio::test]
    async fn the_sdk_request_goes_out_whole_and_the_answer_comes_back_whole() {
        let (base, server) = one_shot(
            "HTTP/1.1 400 Bad Request\r\nx-amzn-requestid: r-1\r\ncontent-length: 9\r\n\r\n{\"e\":\"x\"}",
        )
        .await;
        let response = connector()
            .call(request(&format!("{base}/path?q=1"), "{\"Item\":1}"))
            .await
            .unwrap();
        let received = server.await.unwrap().to_ascii_lowercase();
        assert!(
            received.starts_with("post /path?q=1 http/1.1"),
            "{received}"
        );
        assert!(received.contains("x-amz-target: dynamodb_20120810.putitem"));
        assert!(received.contains("content-length: 10"));
        assert_eq!(response.status().as_u16(), 400);
        assert_eq!(response.headers().get("x-amzn-requestid"), Some("r-1"));
        assert_eq!(response.body().bytes(), Some(&b"{\"e\":\"x\"}"[..]));
    }

    #[tokio::test]
    async fn a_redirect_is_handed_to_the_sdk_not_followed() {
        let (base, server) =
            one_shot("HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:9/\r\ncontent-length: 0\r\n\r\n")
                .await;
        let response = connector()
            .call(request(&format!("{base}/"), "{\"Item\":1}"))
            .await
            .unwrap();
        server.await.unwrap();
        assert_eq!(response.status().as_u16(), 307);
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_io_error_the_sdk_retries() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let error = connector()
            .call(request(&format!("http://{address}/"), "{}"))
            .await
            .unwrap_err();
        assert!(error.is_io(), "{error:?}");
    }

    #[tokio::test]
    async fn the_sdk_read_timeout_is_kept() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // Accepts and never answers.
        let _server = tokio::spawn(async move {
            let (_stream, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await
        });
        let slow = SdkConnector {
            http: build(),
            read_timeout: Some(Duration::from_millis(200)),
        };
        let error = slow
            .call(request(&format!("http://{address}/"), "{}"))
            .await
            .unwrap_err();
        assert!(error.is_timeout(), "{error:?}");
    }
}
