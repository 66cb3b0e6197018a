//! The HTTP side (axum): pages, WebSocket viewers, DASH and HLS, the API. The only part of the
//! program that knows HTTP or WebSockets.
//!
//! | route | handler |
//! |---|---|
//! | `/`, `/watch/{name}`, `/assets/{*path}` | `pages.rs` |
//! | `/ws/{name}` | `ws.rs` |
//! | `/publish/{name}` (PUT, POST) | `publish.rs` |
//! | `/dash/{name}/…`, `/hls/{name}/…` | `media.rs` |
//! | `/api/streams`, `/api/time`, `/healthz` | `api.rs` |
//! | `/api/recordings/{name}`, `/recordings/{name}/…` | `recordings.rs` |
//! | `/metrics` | `metrics.rs` |

mod api;
pub mod auth;
mod error;
mod fanout;
mod frame;
mod limits;
mod media;
mod metrics;
mod pages;
mod publish;
mod reader;
mod recordings;
mod redirect;
mod rtmp;
pub mod tls;
mod viewer;
mod wire;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_layer::Layer;

use fanout::Fanout;

pub use error::ApiError;
pub use limits::{Limits, MIN_HEADER_BYTES};

use crate::stream::{self, HubConfig, StreamDef, Streams};

/// Each connection's kernel send buffer: about a second of a 2 Mbit/s stream.
const SEND_BUFFER_BYTES: usize = 256 * 1024;

/// Bytes a connection's kernel queue may hold that the peer has not been sent yet (Linux's
/// `TCP_NOTSENT_LOWAT`). A viewer that reads slowly stops taking our writes after this much,
/// so its backlog stays in its queue, where it is skipped to a key frame, rather than in
/// the kernel, where it would be played late. Data in flight is not counted: fast links keep
/// their throughput.
#[cfg(any(target_os = "linux", target_os = "android"))]
const NOT_SENT_LOW_WATER_BYTES: u32 = 32 * 1024;

/// How long the tasks still running at shutdown (sources, recorders, viewers being closed)
/// have to finish before the server stops without them.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub streams: Arc<Streams>,
    /// Cancelled at shutdown; WebSocket tasks watch it themselves (axum's graceful shutdown
    /// does not reach upgraded connections).
    pub shutdown: CancellationToken,
    /// Every task the server spawns beside the connections, waited for at shutdown.
    pub tracker: TaskTracker,
    pub started: std::time::Instant,
    pub viewer_limits: Arc<ws::ViewerLimits>,
    /// Connections refused or cut at the door, for `/metrics`.
    pub refusals: Arc<limits::Refusals>,
    /// Each stream's WebSocket viewers; a stream made on the fly gets its own when first
    /// asked for.
    pub(crate) fanouts: Arc<std::sync::Mutex<Vec<Arc<Fanout>>>>,
    /// Shards per fan-out: one per worker thread.
    pub shards: usize,
    pub auth: Arc<auth::Auth>,
    pub admin: AdminGate,
    pub manifest_rate: Arc<limits::RateLimit>,
}

/// What guards the admin routes (`/metrics`, and any route that changes something) on the
/// main listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminGate {
    /// Anyone may read them: no admin token is set and there is no admin listener (a
    /// server on localhost).
    Open,
    /// The admin token (or a JWT with the `admin` action) is needed.
    Token,
    /// They are served on the `--admin-listen` address alone.
    Elsewhere,
}

impl AppState {
    /// The viewers of stream `name`, started now for a stream that has none yet.
    fn fanout(&self, name: &str) -> Option<Arc<Fanout>> {
        let mut fanouts = self.fanouts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fanout) = fanouts.iter().find(|f| f.stream().name == name) {
            return Some(fanout.clone());
        }
        let stream = self.streams.get(name)?;
        let fanout = Fanout::start(stream, self.shards, &self.shutdown, &self.tracker);
        fanouts.push(fanout.clone());
        Some(fanout)
    }
}

pub fn router(state: AppState) -> Router {
    let manifests = Router::new()
        .route("/dash/{name}/manifest.mpd", get(media::dash_manifest))
        .route("/hls/{name}/index.m3u8", get(media::hls_multivariant))
        .route("/hls/{name}/live.m3u8", get(media::hls_media))
        .route("/hls/{name}/{track}/live.m3u8", get(media::hls_track_media))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limit_manifests,
        ));
    // Players on other sites (a dash.js or hls.js page, a CDN's test player) read the media
    // routes and the clock; they must see every answer, a "not yet" 503 included.
    let shared = Router::new()
        .merge(manifests)
        .route("/dash/{name}/{file}", get(media::dash_file))
        .route("/dash/{name}/{track}/{file}", get(media::dash_track_file))
        .route("/hls/{name}/{file}", get(media::hls_part))
        .route("/hls/{name}/{track}/{file}", get(media::hls_track_part))
        .route("/api/streams", get(api::streams))
        .route("/api/time", get(api::time))
        .route("/api/recordings/{name}", get(recordings::list))
        .route("/recordings/{name}/clip.mp4", get(recordings::clip))
        .route("/recordings/{name}/{file}", get(recordings::file))
        .route(
            "/recordings/{name}/{track}/{file}",
            get(recordings::track_file),
        )
        .layer(SetResponseHeaderLayer::if_not_present(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ));
    let admin = Router::new()
        .route("/metrics", get(metrics::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_admin,
        ));
    Router::new()
        .route("/", get(pages::index))
        .route("/watch/{name}", get(pages::watch))
        .route("/assets/{*path}", get(pages::asset))
        .route("/ws/{name}", get(ws::upgrade))
        .route(
            "/publish/{name}",
            get(pages::publish).put(publish::push).post(publish::push),
        )
        .route("/ws/publish/{name}", get(publish::socket))
        .route("/healthz", get(api::healthz))
        .route("/api/auth", get(api::auth))
        .merge(admin)
        .merge(shared)
        .with_state(state)
        .layer(trace_layer())
}

/// The `--admin-listen` listener: the admin routes and the API, no token asked.
fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .route("/api/streams", get(api::streams))
        .route("/api/time", get(api::time))
        .route("/api/auth", get(api::auth))
        .route("/healthz", get(api::healthz))
        .with_state(state)
        .layer(trace_layer())
}

/// The request tracing layer, its spans made by a plain function.
type TraceLayer = tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    fn(&axum::http::Request<axum::body::Body>) -> tracing::Span,
>;

/// Requests logged (at debug) by path alone: a query may carry a token.
fn trace_layer() -> TraceLayer {
    fn span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
        tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
    }
    tower_http::trace::TraceLayer::new_for_http().make_span_with(span as fn(&_) -> _)
}

/// Lets an admin route through as [`AdminGate`] says.
async fn require_admin(
    axum::extract::State(app): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    match app.admin {
        AdminGate::Open => {}
        AdminGate::Elsewhere => {
            return Err(ApiError::NotFound("route (served on the admin address)"));
        }
        AdminGate::Token => {
            let token = auth::token_of(request.headers(), request.uri().query());
            app.auth.admin(token.as_deref()).map_err(ApiError::Denied)?;
        }
    }
    Ok(next.run(request).await)
}

/// The per-address rate limit on manifests and playlists.
async fn limit_manifests(
    axum::extract::State(app): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    let address = request
        .extensions()
        .get::<Arc<limits::AddressSlot>>()
        .map(|slot| slot.address());
    if let Some(address) = address
        && !app.manifest_rate.allow(address, std::time::Instant::now())
    {
        return Err(ApiError::TooMany(
            "too many manifest requests from your address",
        ));
    }
    Ok(next.run(request).await)
}

/// Everything `serve` needs, resolved from the command line and the config file.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub listen: SocketAddr,
    pub streams: Vec<StreamDef>,
    pub hub: HubConfig,
    /// Viewers the whole server takes at once; more are answered 503.
    pub max_viewers: Option<u64>,
    pub limits: Limits,
    /// TLS on the listener: `https://` and `wss://` instead of `http://` and `ws://`.
    pub tls: Option<tls::CertSource>,
    /// A plain-HTTP listener that only sends browsers to the https address (and serves
    /// ACME's HTTP-01 challenges from `acme_dir`).
    pub redirect_listen: Option<SocketAddr>,
    pub acme_dir: Option<std::path::PathBuf>,
    pub auth: auth::AuthSettings,
    /// A second listener (plain HTTP) for `/metrics` and the API without a token; the main
    /// listener then serves `/metrics` to the admin token alone, or not at all.
    pub admin_listen: Option<SocketAddr>,
    /// RTMP publishers (`rtmp://ADDR/APP/NAME`), and RTMP over TLS with the server's
    /// certificate.
    pub rtmp_listen: Option<SocketAddr>,
    pub rtmps_listen: Option<SocketAddr>,
    /// Publishers may make streams by publishing to new names (`publish = "any"`).
    pub on_the_fly: Option<stream::OnTheFly>,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("tokens: {0}")]
    Key(#[from] auth::KeyError),
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Binds, starts the streams, serves until Ctrl-C (or SIGTERM), then shuts down in order.
pub async fn serve(settings: ServeSettings) -> Result<(), ServeError> {
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })
    };
    let listener = bind(settings.listen).await?;
    let local = listener.local_addr()?;
    let redirect_listener = match settings.redirect_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let admin_listener = match settings.admin_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let rtmp_listener = match settings.rtmp_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let rtmps_listener = match settings.rtmps_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let auth = Arc::new(auth::Auth::new(&settings.auth)?);
    let admin = if auth.has_admin_token() {
        AdminGate::Token
    } else if admin_listener.is_some() {
        AdminGate::Elsewhere
    } else {
        AdminGate::Open
    };
    if admin == AdminGate::Open && !local.ip().is_loopback() {
        tracing::warn!(
            "/metrics is open to anyone who can reach {local}: set admin_token (or --admin-listen) before exposing the server"
        );
    }
    let token_streams: Vec<&str> = settings
        .streams
        .iter()
        .filter(|s| s.read == stream::Access::Token)
        .map(|s| s.name.as_str())
        .collect();
    if !token_streams.is_empty() && !auth.has_keys() && !auth.has_admin_token() {
        return Err(ServeError::Key(auth::KeyError::NoKeys(
            token_streams.join(", "),
        )));
    }
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let tls = match &settings.tls {
        Some(source) => Some(Arc::new(tls::Tls::start(
            source, local, &shutdown, &tracker,
        )?)),
        None => None,
    };
    let streams = Arc::new(stream::start(
        settings.streams,
        &settings.hub,
        settings.on_the_fly,
        &shutdown,
        &tracker,
    ));
    let names: Vec<String> = streams.all().iter().map(|s| s.name.clone()).collect();
    let scheme = if tls.is_some() { "https" } else { "http" };
    // One shard per worker thread: every core can write to viewers.
    let shards = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fanouts = streams
        .all()
        .into_iter()
        .map(|stream| Fanout::start(stream, shards, &shutdown, &tracker))
        .collect();
    let state = AppState {
        streams: streams.clone(),
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        started: std::time::Instant::now(),
        viewer_limits: Arc::new(ws::ViewerLimits {
            total: Default::default(),
            max_total: settings.max_viewers,
        }),
        refusals: Arc::new(limits::Refusals::default()),
        fanouts: Arc::new(std::sync::Mutex::new(fanouts)),
        shards,
        auth,
        admin,
        manifest_rate: Arc::new(limits::RateLimit::new(
            settings.limits.manifest_requests_per_sec,
        )),
    };
    let door = Door {
        limits: settings.limits.clone(),
        counts: Arc::default(),
        refusals: state.refusals.clone(),
        tls,
    };
    // Not tracked: it outlives the shutdown it starts, waiting for a second Ctrl-C.
    tokio::spawn(watch_signals(shutdown.clone()));
    // The plain-HTTP listeners beside the main one share its limits and address counts.
    let serve_plain = |listener: TcpListener, app: Router| {
        let door = Door {
            limits: settings.limits.clone(),
            counts: door.counts.clone(),
            refusals: state.refusals.clone(),
            tls: None,
        };
        let shutdown = shutdown.clone();
        tracker.spawn(async move { accept(listener, app, door, &shutdown).await });
    };
    if let Some(listener) = redirect_listener {
        let redirect_local = listener.local_addr()?;
        tracing::info!(
            "redirecting http://{redirect_local}/ to https (port {})",
            local.port()
        );
        serve_plain(
            listener,
            redirect::router(local.port(), settings.acme_dir.clone()),
        );
    }
    for (listener, tls) in [(rtmp_listener, None), (rtmps_listener, door.tls.clone())] {
        let Some(listener) = listener else { continue };
        let scheme = if tls.is_some() { "rtmps" } else { "rtmp" };
        tracing::info!(
            "RTMP publishers on {scheme}://{}/live/NAME",
            listener.local_addr()?
        );
        tracker.spawn(rtmp::serve(
            listener,
            state.clone(),
            tls,
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    if let Some(listener) = admin_listener {
        let admin_local = listener.local_addr()?;
        tracing::info!("admin routes on http://{admin_local}/metrics");
        serve_plain(listener, admin_router(state.clone()));
    }
    // Last: what reads the log for this line finds the other listeners' lines before it.
    tracing::info!(
        "listening on {scheme}://{local}/ (streams: {})",
        names.join(", ")
    );
    accept(listener, router(state), door, &shutdown).await;
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_DRAIN, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "some tasks did not stop within {} s",
            SHUTDOWN_DRAIN.as_secs()
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// Takes connections until `shutdown`, each served as HTTP/1.1 in a task of its own; then
/// lets every open request finish (a WebSocket viewer is no longer a request: its stream's
/// fan-out closes it).
///
/// Not `axum::serve`: that puts each connection behind a private buffering wrapper (to tell
/// HTTP/2 from HTTP/1), and the fan-out needs the upgraded connection to be the `TcpStream`
/// itself (or its TLS stream), to write to its socket directly.
async fn accept(listener: TcpListener, app: Router, door: Door, shutdown: &CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, or a connection that died in the backlog:
                    // say so and carry on, a little later for the former.
                    if !matches!(
                        err.kind(),
                        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                    ) {
                        tracing::error!(%err, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Some(slot) = door
            .counts
            .admit(peer.ip(), door.limits.max_connections_per_address)
        else {
            door.refusals
                .too_many_from_address
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(%peer, "refused: too many connections from this address");
            connections.spawn(refuse(tcp));
            continue;
        };
        configure_socket(&tcp);
        // Each request carries the connection's place in its address's count; a WebSocket
        // viewer keeps it after the upgrade.
        let service = TowerToHyperService::new(axum::Extension(Arc::new(slot)).layer(app.clone()));
        let shutdown = shutdown.clone();
        let refusals = door.refusals.clone();
        let limits = door.limits.clone();
        let tls = door.tls.clone();
        connections.spawn(async move {
            let Some(tls) = tls else {
                let io = TokioIo::new(tcp);
                return serve_connection(io, service, &limits, &shutdown, &refusals, peer).await;
            };
            // The handshake has the header timeout too: a client that opens a connection and
            // says nothing holds no task forever, with TLS or without.
            let handshake = tokio::time::timeout(limits.header_timeout, tls.acceptor.accept(tcp));
            let stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        refusals.tls_handshake.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return tracing::debug!(%peer, %err, "TLS handshake failed");
                    }
                    Err(_) => {
                        refusals.header_timeout.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return tracing::debug!(%peer, "dropped: no TLS handshake in time");
                    }
                },
                _ = shutdown.cancelled() => return,
            };
            let io = TokioIo::new(stream);
            serve_connection(io, service, &limits, &shutdown, &refusals, peer).await
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// One connection served as HTTP/1.1 until it ends, or until shutdown lets its open request
/// finish.
async fn serve_connection<I>(
    io: TokioIo<I>,
    service: TowerToHyperService<axum::middleware::AddExtension<Router, Arc<limits::AddressSlot>>>,
    limits: &Limits,
    shutdown: &CancellationToken,
    refusals: &limits::Refusals,
    peer: SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes);
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    match result {
        Ok(()) => {}
        Err(err) if err.is_timeout() => {
            refusals
                .header_timeout
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(%peer, "dropped: no whole request header in time");
        }
        Err(err) if err.is_parse_too_large() => {
            refusals
                .header_too_large
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(%peer, "refused: request header too large (431)");
        }
        Err(err) => tracing::trace!(%err, "connection ended with an error"),
    }
}

/// What the accept loop checks before a connection is served, and how it is served.
struct Door {
    limits: Limits,
    counts: Arc<limits::AddressCounts>,
    refusals: Arc<limits::Refusals>,
    /// TLS, if the listener speaks it.
    tls: Option<Arc<tls::Tls>>,
}

/// Tells a refused connection why (429), as far as its socket takes it at once, and closes it.
async fn refuse(tcp: TcpStream) {
    let _ = tcp.try_write(limits::TOO_MANY_CONNECTIONS);
    let _ = socket2::SockRef::from(&tcp).shutdown(std::net::Shutdown::Write);
    // Lingering a moment lets the peer read the answer before the socket goes away.
    let _ = tokio::time::timeout(Duration::from_millis(500), tcp.readable()).await;
}

/// Options every connection gets before its first byte.
fn configure_socket(tcp: &TcpStream) {
    // Nagle's algorithm would hold small fragments back: latency first.
    let _ = tcp.set_nodelay(true);
    // A kernel send buffer can hold seconds of video, hiding a slow viewer from its queue; a
    // bounded one makes the backlog show where we can skip it.
    let socket = socket2::SockRef::from(tcp);
    let _ = socket.set_send_buffer_size(SEND_BUFFER_BYTES);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = socket.set_tcp_notsent_lowat(NOT_SENT_LOW_WATER_BYTES);
}

/// The first Ctrl-C (or SIGTERM) stops the server in order; a second one exits at once.
async fn watch_signals(shutdown: CancellationToken) {
    let terminate = async {
        #[cfg(unix)]
        {
            if let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                term.recv().await;
                return;
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down (press Ctrl-C again to quit at once)");
    shutdown.cancel();
    if tokio::signal::ctrl_c().await.is_ok() {
        tracing::warn!("second Ctrl-C: exiting now");
        std::process::exit(130);
    }
}
