//! The federation listener's TLS: the configured certificate (or a self-signed one for
//! development), and a listener that finishes handshakes off the accept loop.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use palisade_core::{Config, Error, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinHandle,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

/// How long a peer may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; further connections wait to be accepted.
const MAX_HANDSHAKES: usize = 256;

/// The TLS configuration the federation listener serves with.
pub fn server_config(config: &Config) -> Result<Arc<rustls::ServerConfig>> {
    let federation = &config.federation;
    let (chain, key) = match (&federation.tls_certificate_path, &federation.tls_private_key_path) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| Error::internal(format!("reading {}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| Error::internal(format!("reading {}: {e}", key.display())))?;
            (chain, key)
        }
        _ => {
            tracing::warn!("serving federation with a self-signed certificate (development only)");
            let host = config.server_name.host().trim_matches(['[', ']']).to_owned();
            let generated = rcgen::generate_simple_self_signed(vec![host])
                .map_err(|e| Error::internal(format!("self-signed certificate: {e}")))?;
            let key = PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
            (vec![generated.cert.der().clone()], key.into())
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| Error::internal(format!("federation TLS: {e}")))?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

/// A listener handing out connections whose TLS handshake has completed; a slow or broken
/// handshake holds up nobody else.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor: JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `listener`, handshaking with `config`.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> Result<Self> {
        let local = listener.local_addr().map_err(|e| Error::internal(e.to_string()))?;
        let (sender, ready) = mpsc::channel(64);
        let tls = TlsAcceptor::from(config);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok(permit) = handshakes.clone().acquire_owned().await else { return };
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "federation accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (tls, sender) = (tls.clone(), sender.clone());
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await;
                    drop(permit);
                    match handshake {
                        Ok(Ok(stream)) => drop(sender.send((stream, peer)).await),
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { local, ready, acceptor })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
