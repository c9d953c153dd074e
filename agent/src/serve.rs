//! `dr-syncer-agent serve`: the SSH server of a short-lived source rsync pod. It accepts only the mapping's keys and
//! one session running one rsync sender command for the volume root (checked by `dr_syncer_wire::rsync_args`), then runs
//! the real `rsync --server --sender` with the rebuilt arguments — no shell — and relays its stdin, stdout, stderr
//! and exit status. One session channel per connection, one command on it. Everything else is refused, logged and
//! counted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use russh::keys::{Certificate, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tracing::{debug, info, warn};

use crate::listen::{Gate, Service};
use crate::metrics::AgentMetrics;
use dr_syncer_wire::keys;
use dr_syncer_wire::policy::Refusal;
use dr_syncer_wire::rsync_args::{self, SenderCommand};

/// Exit status reported when rsync could not be started or was killed by a signal.
const EXIT_FAILED: u32 = 255;

/// What the rsync pod's server needs.
#[derive(Clone)]
pub struct RsyncServer {
    /// Keys of the mapping this pod serves.
    pub authorized: Arc<Vec<PublicKey>>,
    /// The volume's mount path.
    pub root: PathBuf,
    /// The rsync program.
    pub rsync: PathBuf,
    /// The agent's metrics (connections, refusals by reason, bytes relayed).
    pub metrics: AgentMetrics,
}

impl Service for RsyncServer {
    type Handler = RsyncSession;

    fn connect(&mut self, peer: SocketAddr, gate: Gate) -> RsyncSession {
        RsyncSession { server: self.clone(), peer, fingerprint: None, channel: None, used: false, gate }
    }
}

/// One client connection to the rsync pod.
pub struct RsyncSession {
    server: RsyncServer,
    peer: SocketAddr,
    fingerprint: Option<String>,
    /// The session channel, until a command starts on it.
    channel: Option<Channel<Msg>>,
    /// A session channel was opened on this connection already: there is one per connection, for one command.
    used: bool,
    gate: Gate,
}

impl RsyncSession {
    fn accepts(&self, key: &PublicKey) -> bool {
        self.server.authorized.iter().any(|k| keys::same_key(k, key))
    }

    /// Accepts the mapping's keys; `verified` once the client proved it holds the private half.
    fn check_key(&mut self, key: &PublicKey, verified: bool) -> Auth {
        let fingerprint = keys::fingerprint(key);
        if !self.accepts(key) {
            self.server.metrics.refusals.with_label_values(&[Refusal::UnknownKey.reason()]).inc();
            warn!(peer = %self.peer, %fingerprint, reason = Refusal::UnknownKey.reason(), "refused: unknown key");
            return Auth::reject();
        }
        if verified {
            info!(peer = %self.peer, %fingerprint, "authenticated");
            self.fingerprint = Some(fingerprint);
            self.gate.authenticated();
        }
        Auth::Accept
    }

    fn refuse(&self, reason: &'static str, message: &str) {
        self.server.metrics.refusals.with_label_values(&[reason]).inc();
        let fingerprint = self.fingerprint.as_deref().unwrap_or("-");
        warn!(peer = %self.peer, fingerprint, reason, "refused: {message}");
    }

    async fn refuse_request(&mut self, channel: ChannelId, what: &'static str, session: &mut Session) {
        let refusal = Refusal::Request(what);
        self.refuse(refusal.reason(), &refusal.to_string());
        let _ = session.channel_failure(channel);
        if let Some(open) = self.channel.take() {
            let _ = open.close().await;
        }
    }
}

impl russh::server::Handler for RsyncSession {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, _user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        Ok(self.check_key(offer.public_key, false))
    }

    async fn auth_publickey(&mut self, _user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        Ok(self.check_key(key.public_key, true))
    }

    async fn auth_openssh_certificate(&mut self, _user: &str, certificate: &Certificate) -> Result<Auth, Self::Error> {
        // The copy's client presents its certificate first; what counts here is its key, one of this copy's.
        Ok(self.check_key(&PublicKey::new(certificate.public_key().clone(), ""), true))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.used {
            self.refuse("RequestNotAllowed", "a second session on one connection");
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        } else {
            self.used = true;
            self.channel = Some(channel);
            reply.accept().await;
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host: &str,
        _port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse("RequestNotAllowed", "a TCP forward");
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn exec_request(&mut self, id: ChannelId, data: &[u8], session: &mut Session) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        let parsed = rsync_args::parse_sender(&command, &self.server.root.to_string_lossy());
        let (Some(channel), Ok(sender)) = (self.channel.take(), parsed.as_ref()) else {
            let (reason, message) = match &parsed {
                Err(refusal) => (refusal.reason(), format!("{refusal}: {command:?}")),
                Ok(_) => ("RequestNotAllowed", "a command on a channel that already ran one".to_string()),
            };
            self.refuse(reason, &message);
            let _ = session.channel_failure(id);
            let _ = session.close(id);
            return Ok(());
        };
        let _ = session.channel_success(id);
        info!(peer = %self.peer, fingerprint = self.fingerprint.as_deref().unwrap_or("-"), ?command, "running rsync");
        tokio::spawn(run(channel, self.server.clone(), sender.clone()));
        Ok(())
    }

    async fn shell_request(&mut self, id: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        self.refuse_request(id, "a shell", session).await;
        Ok(())
    }

    async fn subsystem_request(&mut self, id: ChannelId, name: &str, session: &mut Session) -> Result<(), Self::Error> {
        debug!(name, "subsystem requested");
        self.refuse_request(id, "a subsystem", session).await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        id: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_request(id, "a terminal", session).await;
        Ok(())
    }

    async fn agent_request(&mut self, _id: ChannelId, _session: &mut Session) -> Result<bool, Self::Error> {
        self.refuse("RequestNotAllowed", "agent forwarding");
        Ok(false)
    }

    async fn tcpip_forward(&mut self, _address: &str, _port: &mut u32, _s: &mut Session) -> Result<bool, Self::Error> {
        self.refuse("RequestNotAllowed", "a remote forward");
        Ok(false)
    }
}

/// Runs rsync for one accepted command: client data → rsync stdin, rsync stdout → channel data, stderr → channel
/// extended data; then the exit status, EOF and close, in that order on the same channel.
async fn run(channel: Channel<Msg>, server: RsyncServer, command: SenderCommand) {
    let child = Command::new(&server.rsync)
        .args(&command.args)
        .current_dir(&server.root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let (mut reader, writer) = channel.split();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            warn!(rsync = %server.rsync.display(), %error, "cannot start rsync");
            let message = format!("dr-syncer-agent: cannot start rsync: {error}\n");
            let _ = writer.extended_data_bytes(1, message.into_bytes()).await;
            let _ = writer.exit_status(EXIT_FAILED).await;
            let _ = writer.eof().await;
            let _ = writer.close().await;
            return;
        }
    };
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return;
    };
    let input = async move {
        let mut from_client = reader.make_reader();
        let _ = tokio::io::copy(&mut from_client, &mut stdin).await;
        let _ = stdin.shutdown().await;
    };
    let output = async {
        let mut to_client = writer.make_writer();
        let _ = tokio::io::copy(&mut stdout, &mut to_client).await;
        let _ = to_client.flush().await;
    };
    let errors = async {
        let mut buffer = vec![0u8; 8192];
        while let Ok(n @ 1..) = stderr.read(&mut buffer).await {
            let _ = writer.extended_data_bytes(1, buffer[..n].to_vec()).await;
        }
    };
    let input = tokio::spawn(input);
    tokio::join!(output, errors);
    let status = child.wait().await.ok().and_then(|s| s.code()).map_or(EXIT_FAILED, |c| c as u32);
    input.abort();
    info!(status, "rsync finished");
    let _ = writer.exit_status(status).await;
    let _ = writer.eof().await;
    let _ = writer.close().await;
}
