//! The Palisade server as a library: load configuration, open storage, wire services, serve.
//!
//! `main.rs` is the command line over this; integration tests start servers through it too.

use std::{net::SocketAddr, path::Path, sync::Arc};

pub mod tls;

use palisade_api::AppState;
use palisade_core::{Clock, Config, Error, Result, SystemClock, config::Registration};
use palisade_federation::{Federation, OpenFederation};
use palisade_media::{FileStore, MediaService};
use palisade_service::{Services, SigningKey};
use palisade_storage::Stores;
use tokio::net::TcpListener;

/// Reads the configuration file (if any), then applies the environment overrides.
pub fn load_config(path: Option<&Path>) -> Result<Config> {
    let text = match path {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Error::invalid_param(format!("reading {}: {e}", path.display())))?,
        None => String::new(),
    };
    Config::from_toml_with_env(&text, std::env::vars())
}

/// Reads the server's signing key, creating it (readable by the owner only) on first start.
fn load_or_create_signing_key(path: &Path) -> Result<SigningKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => SigningKey::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (key, serialized) = SigningKey::generate()?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::internal(format!("creating {}: {e}", dir.display())))?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(path)
                .map_err(|e| Error::internal(format!("creating {}: {e}", path.display())))?;
            std::io::Write::write_all(&mut file, serialized.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::internal(format!("writing {}: {e}", path.display())))?;
            tracing::info!(key_id = %key.key_id(), "generated a new signing key");
            Ok(key)
        }
        Err(e) => Err(Error::internal(format!("reading {}: {e}", path.display()))),
    }
}

/// Opens the data directory and wires the services.
pub async fn open(config: Config, clock: Arc<dyn Clock>) -> Result<Services> {
    Ok(open_stores(config, clock).await?.0)
}

/// Opens storage, the services and the content repository (for the media commands).
pub async fn open_with_media(
    config: Config,
    clock: Arc<dyn Clock>,
) -> Result<(Services, Arc<MediaService>)> {
    let (services, stores) = open_stores(config, clock).await?;
    let media = media_service(&services, stores.media)?;
    Ok((services, media))
}

/// The content repository over the services, its records and the files under the data
/// directory.
fn media_service(
    services: &Services,
    store: Arc<dyn palisade_storage::MediaStore>,
) -> Result<Arc<MediaService>> {
    MediaService::new(
        services.config.clone(),
        store,
        Arc::new(FileStore::new(services.config.media_path())),
        services.trust.clone(),
        services.clock.clone(),
        services.outbound.clone(),
    )
    .map(Arc::new)
}

async fn open_stores(config: Config, clock: Arc<dyn Clock>) -> Result<(Services, Stores)> {
    let stores = palisade_storage_sqlite::open(&config.database_path())?;
    let key = load_or_create_signing_key(&config.signing_key_path())?;
    Ok((Services::new(config, stores.clone(), key, clock).await?, stores))
}

/// A server bound to its listeners, ready to run.
pub struct Server {
    state: AppState,
    listener: TcpListener,
    federation: Option<tls::TlsListener>,
}

async fn bind(address: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(address).await.map_err(|e| Error::internal(format!("binding {address}: {e}")))
}

impl Server {
    /// Opens storage and binds the listeners from the configuration.
    pub async fn bind(config: Config) -> Result<Self> {
        let listener = bind(config.listen.client).await?;
        let federation = match config.listen.federation {
            Some(address) => Some(bind(address).await?),
            None => None,
        };
        Self::with_listeners(config, listener, federation, Arc::new(SystemClock)).await
    }

    /// Uses already bound listeners and a given clock (tests bind port 0). The federation
    /// listener is served only when the configuration turns federation on.
    pub async fn with_listeners(
        config: Config,
        listener: TcpListener,
        federation: Option<TcpListener>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        if config.registration == Registration::Open {
            tracing::warn!(
                "registration is open: anyone who can reach this server can create an account"
            );
        }
        let tls = match federation {
            Some(listener) if config.listen.federation.is_some() => {
                Some(tls::TlsListener::new(listener, tls::server_config(&config)?)?)
            }
            _ => None,
        };
        let (services, stores) = open_stores(config, clock).await?;
        let federation = Arc::new(Federation::new(
            services.clone(),
            stores.federation,
            Arc::new(OpenFederation),
        )?);
        // The services reach other servers through the port federation implements.
        services.outbound.connect(federation.clone());
        let media = media_service(&services, stores.media)?;
        let state = AppState::new(services, federation, media);
        Ok(Self { state, listener, federation: tls })
    }

    /// The address the client listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The address the federation listener is bound to, when federation is on.
    pub fn federation_addr(&self) -> Option<SocketAddr> {
        self.federation.as_ref().map(|listener| {
            axum::serve::Listener::local_addr(listener).expect("a bound listener has an address")
        })
    }

    /// The services behind this server.
    pub fn services(&self) -> &Services {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let sweeper = spawn_stale_device_sweeper(&self.state);
        self.state.federation.start().await?;
        let gateway = palisade_push::HttpPushGateway::new(&self.state.config)?;
        self.state.push.connect(Arc::new(gateway));
        self.state.push.start().await?;
        let push = self.state.push.clone();
        self.state.sync.restore_connections().await?;
        let sync = self.state.sync.clone();
        let federation_service = self.state.federation.clone();
        let (stop, stopped) = tokio::sync::watch::channel(());
        let federation = self.federation.map(|listener| {
            let addr = axum::serve::Listener::local_addr(&listener).ok();
            tracing::info!(?addr, "federation API listening");
            let app = palisade_api::federation_router(self.state.clone());
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move { drop(stopped.changed().await) })
                    .await
            })
        });
        let app = palisade_api::router(self.state);
        tracing::info!(addr = %self.listener.local_addr().map_err(|e| Error::internal(e.to_string()))?, "client API listening");
        let served =
            axum::serve(self.listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move {
                    shutdown.await;
                    stop.send_replace(());
                })
                .await
                .map_err(|e| Error::internal(format!("server: {e}")));
        if let Some(federation) = federation {
            drop(federation.await);
        }
        federation_service.stop();
        push.stop();
        if let Err(error) = sync.save_connections().await {
            tracing::warn!(%error, "sliding sync connections not saved: clients will start over");
        }
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        served
    }
}

/// Signs out devices never approved within `untrusted_device_lifetime_secs`, checking a tenth
/// of that often (between every second and every ten minutes).
fn spawn_stale_device_sweeper(services: &Services) -> Option<tokio::task::JoinHandle<()>> {
    let lifetime = services.config.device_trust.untrusted_device_lifetime_secs;
    if lifetime == 0 {
        return None;
    }
    let trust = services.trust.clone();
    let every = std::time::Duration::from_secs((lifetime / 10).clamp(1, 600));
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(error) = trust.sign_out_stale(lifetime * 1000).await {
                tracing::error!(%error, "signing out stale untrusted devices failed");
            }
        }
    }))
}
