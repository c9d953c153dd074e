//! The SSH accept loop of the bastion and the rsync pod's server, hardened against pre-authentication denial of
//! service: every connection must finish the version exchange, key exchange and authentication within the login
//! grace time or it is cut; connections that have not authenticated yet are capped in total and per source
//! address (like OpenSSH's `MaxStartups`), all connections in total; a connection over a cap is closed at once; and
//! a failed `accept()` (out of file descriptors, for example) is retried with a backoff instead of ending the
//! server.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::{debug, warn};

use crate::metrics::AgentMetrics;

/// First pause after a failed `accept()`; doubled on each further failure.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(20);
/// Longest pause after failed `accept()`s.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Connection limits of an SSH listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Time from accept to successful authentication.
    pub login_grace: Duration,
    /// Connections not authenticated yet, from all sources.
    pub max_startups: usize,
    /// Connections not authenticated yet, from one source address.
    pub max_startups_per_source: usize,
    /// Connections in total, authenticated or not.
    pub max_connections: usize,
}

impl Default for Limits {
    /// 30 s to log in; 64 pending logins, 8 from one address; 512 connections (each relay or rsync run needs one
    /// connection, so this is far above what `globalConcurrencyLimit` lets a node carry).
    fn default() -> Limits {
        Limits {
            login_grace: Duration::from_secs(30),
            max_startups: 64,
            max_startups_per_source: 8,
            max_connections: 512,
        }
    }
}

/// The listener's hold on one connection, given to its handler: the handler reports a successful login (which ends
/// the login grace time) and may cut the connection (a key that left the policy).
#[derive(Clone, Debug)]
pub struct Gate {
    login: Arc<watch::Sender<bool>>,
    cut: CancellationToken,
}

impl Gate {
    /// Marks the connection authenticated: it no longer counts against the startup limits or the grace time.
    pub fn authenticated(&self) {
        self.login.send_replace(true);
    }

    /// Closes the connection, with every channel on it.
    pub fn cut(&self) {
        self.cut.cancel();
    }

    /// Completes once the connection is cut or the listener stops.
    pub async fn closed(&self) {
        self.cut.cancelled().await;
    }
}

/// What an SSH listener serves: makes the handler of each accepted connection.
pub trait Service: Send + 'static {
    /// The connection handler.
    type Handler: russh::server::Handler<Error = russh::Error> + Send + 'static;
    /// The handler of a connection from `peer`; it calls [`Gate::authenticated`] when the client authenticated.
    fn connect(&mut self, peer: SocketAddr, gate: Gate) -> Self::Handler;
}

/// Counts of open connections, shared by the accept loop and the connection tasks.
#[derive(Default)]
struct Counts {
    total: usize,
    startups: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// The limit a connection hit, so it was closed without being served (the `reason` label of the drop counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cap {
    Connections,
    Startups,
    SourceStartups,
}

impl Cap {
    fn reason(self) -> &'static str {
        match self {
            Cap::Connections => "ConnectionLimit",
            Cap::Startups => "StartupLimit",
            Cap::SourceStartups => "SourceStartupLimit",
        }
    }
}

/// Releases a connection's counts when dropped: its startup slot on authentication or end, its connection slot at
/// its end.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    source: IpAddr,
    metrics: AgentMetrics,
    startup: bool,
}

impl Slot {
    fn take(counts: &Arc<Mutex<Counts>>, source: IpAddr, limits: &Limits, metrics: &AgentMetrics) -> Result<Slot, Cap> {
        let mut c = counts.lock().map_err(|_| Cap::Connections)?;
        let from_source = c.per_source.get(&source).copied().unwrap_or(0);
        if c.total >= limits.max_connections {
            return Err(Cap::Connections);
        }
        if c.startups >= limits.max_startups {
            return Err(Cap::Startups);
        }
        if from_source >= limits.max_startups_per_source {
            return Err(Cap::SourceStartups);
        }
        c.total += 1;
        c.startups += 1;
        *c.per_source.entry(source).or_default() += 1;
        metrics.unauthenticated.inc();
        Ok(Slot { counts: counts.clone(), source, metrics: metrics.clone(), startup: true })
    }

    /// Gives back the startup slot (the connection authenticated, or ended before).
    fn end_startup(&mut self) {
        if !std::mem::replace(&mut self.startup, false) {
            return;
        }
        self.metrics.unauthenticated.dec();
        if let Ok(mut c) = self.counts.lock() {
            c.startups = c.startups.saturating_sub(1);
            if let Some(n) = c.per_source.get_mut(&self.source) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.per_source.remove(&self.source);
                }
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.end_startup();
        if let Ok(mut c) = self.counts.lock() {
            c.total = c.total.saturating_sub(1);
        }
    }
}

/// A stream that fails every read and write once its token is cancelled, so a session stuck at any stage (even
/// before russh has a session to disconnect) ends and its socket is closed.
struct Cuttable<S> {
    inner: S,
    cut: CancellationToken,
    waiter: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<S> Cuttable<S> {
    fn new(inner: S, cut: CancellationToken) -> Cuttable<S> {
        let waiter = Box::pin(cut.clone().cancelled_owned());
        Cuttable { inner, cut, waiter }
    }

    /// `Some(error)` once cut; otherwise registers the task to be woken when it is.
    fn check(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let cut = self.cut.is_cancelled() || self.waiter.as_mut().poll(cx).is_ready();
        cut.then(|| io::Error::new(io::ErrorKind::ConnectionAborted, "connection cut by the agent"))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Cuttable<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(error) = self.check(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Cuttable<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(error) = self.check(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(error) = self.check(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts SSH connections on `listener` until `stop` is cancelled, then cuts every open connection.
pub async fn serve<S: Service>(
    mut service: S,
    config: Arc<russh::server::Config>,
    listener: TcpListener,
    limits: Limits,
    metrics: AgentMetrics,
    stop: CancellationToken,
) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF_MIN;
                accepted
            }
            Err(error) => {
                metrics.accept_errors.inc();
                warn!(%error, pause = ?backoff, "accept failed; pausing");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let slot = match Slot::take(&counts, peer.ip().to_canonical(), &limits, &metrics) {
            Ok(slot) => slot,
            Err(dropped) => {
                metrics.dropped.with_label_values(&[dropped.reason()]).inc();
                debug!(%peer, reason = dropped.reason(), "connection closed at once");
                continue;
            }
        };
        metrics.connections.inc();
        let (login, authenticated) = watch::channel(false);
        let cut = stop.child_token();
        let handler = service.connect(peer, Gate { login: Arc::new(login), cut: cut.clone() });
        tokio::spawn(connection(stream, handler, config.clone(), slot, authenticated, cut, limits.login_grace));
    }
}

/// Runs one connection: the session, and the login deadline that cuts it unless it authenticates in time.
async fn connection<H>(
    stream: TcpStream,
    handler: H,
    config: Arc<russh::server::Config>,
    mut slot: Slot,
    mut authenticated: watch::Receiver<bool>,
    cut: CancellationToken,
    grace: Duration,
) where
    H: russh::server::Handler<Error = russh::Error> + Send + 'static,
{
    if config.nodelay {
        let _ = stream.set_nodelay(true);
    }
    let metrics = slot.metrics.clone();
    let stream = Cuttable::new(stream, cut.clone());
    let session = async move {
        let running = russh::server::run_stream(config, stream, handler).await?;
        running.await
    };
    tokio::pin!(session);
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    let mut timed_out = false;
    let result = loop {
        tokio::select! {
            result = &mut session => break result,
            _ = authenticated.wait_for(|done| *done), if slot.startup => {
                // Authenticated, or the handler is gone (the session is ending): the login slot is free either way.
                slot.end_startup();
            }
            () = &mut deadline, if slot.startup && !timed_out => {
                timed_out = true;
                metrics.dropped.with_label_values(&["LoginTimeout"]).inc();
                debug!("no authentication within the login grace time; closing");
                cut.cancel();
            }
        }
    };
    if let Err(error) = result {
        // Resets and early EOFs when a client goes away are the normal end of `ssh -W`.
        debug!(%error, "connection ended");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limits(startups: usize, per_source: usize, total: usize) -> Limits {
        Limits {
            login_grace: Duration::from_secs(1),
            max_startups: startups,
            max_startups_per_source: per_source,
            max_connections: total,
        }
    }

    #[test]
    fn slots_enforce_each_cap_and_come_back_when_released() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let metrics = AgentMetrics::new().unwrap();
        let (a, b, c): (IpAddr, IpAddr, IpAddr) =
            ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap(), "127.0.0.4".parse().unwrap());
        let l = limits(3, 2, 4);
        let a1 = Slot::take(&counts, a, &l, &metrics).unwrap();
        let mut a2 = Slot::take(&counts, a, &l, &metrics).unwrap();
        assert_eq!(Slot::take(&counts, a, &l, &metrics).err(), Some(Cap::SourceStartups));
        let _b1 = Slot::take(&counts, b, &l, &metrics).unwrap();
        assert_eq!(Slot::take(&counts, c, &l, &metrics).err(), Some(Cap::Startups));
        assert_eq!(metrics.unauthenticated.get(), 3);
        // An authenticated connection frees its startup slot but still counts against the total.
        a2.end_startup();
        a2.end_startup();
        assert_eq!(metrics.unauthenticated.get(), 2);
        let _c1 = Slot::take(&counts, c, &l, &metrics).unwrap();
        assert_eq!(Slot::take(&counts, c, &l, &metrics).err(), Some(Cap::Connections));
        drop(a1);
        drop(a2);
        let _a3 = Slot::take(&counts, a, &l, &metrics).unwrap();
        assert_eq!(counts.lock().unwrap().total, 3);
    }
}
