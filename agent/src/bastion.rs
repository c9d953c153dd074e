//! `dr-syncer-agent bastion`: the SSH jump host of a source cluster's node. A DR rsync client authenticates with
//! its mapping's key and may only open direct-tcpip channels to that mapping's rsync pods on this node; everything
//! else (sessions, so shell/exec/pty/subsystem; remote forwarding; other targets) is refused, logged with the key
//! fingerprint, and counted by reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use russh::keys::{Certificate, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelOpenFailure};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::listen::{Gate, Service};
use crate::metrics::AgentMetrics;
use crate::targets::TargetRules;
use dr_syncer_wire::policy::{Credential, Identity, Policy, Refusal};

/// Time allowed to connect to an rsync pod.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Copy buffer of the relay in each direction: 64 KiB cut the bastion's CPU per GiB by a quarter against 8 KiB.
const RELAY_BUFFER: usize = 64 << 10;

/// The bastion's server: hands each connection the current policy.
#[derive(Clone)]
pub struct Bastion {
    /// Current policy; replaced as a whole when the authorized set or the targets change.
    pub policy: watch::Receiver<Arc<Policy>>,
    /// The agent's metrics (connections, refusals by reason, bytes relayed).
    pub metrics: AgentMetrics,
    /// Addresses relayed to at all (the rsync port, pod addresses), whatever the policy lists.
    pub rules: Arc<TargetRules>,
}

impl Service for Bastion {
    type Handler = Connection;

    fn connect(&mut self, peer: SocketAddr, gate: Gate) -> Connection {
        let rules = self.rules.clone();
        Connection { peer, policy: self.policy.clone(), metrics: self.metrics.clone(), identity: None, gate, rules }
    }
}

/// One client connection.
pub struct Connection {
    peer: SocketAddr,
    policy: watch::Receiver<Arc<Policy>>,
    metrics: AgentMetrics,
    /// The mapping and key the client authenticated as.
    identity: Option<(Identity, Credential)>,
    gate: Gate,
    rules: Arc<TargetRules>,
}

impl Connection {
    fn refuse(&self, refusal: &Refusal, key: Option<&PublicKey>) {
        self.metrics.refusals.with_label_values(&[refusal.reason()]).inc();
        let fingerprint = match (&self.identity, key) {
            (Some((identity, _)), _) => identity.fingerprint.clone(),
            (None, Some(key)) => dr_syncer_wire::keys::fingerprint(key),
            (None, None) => "-".to_string(),
        };
        let mapping = self.identity.as_ref().map_or("-", |(i, _)| i.mapping.as_str());
        warn!(peer = %self.peer, %fingerprint, mapping, reason = refusal.reason(), "refused: {refusal}");
    }

    fn identify(&self, credential: &Credential) -> Result<Identity, Refusal> {
        self.policy.borrow().identify_credential(credential, Timestamp::now())
    }

    /// Accepts `credential` if the policy names its mapping; the connection is then watched for revocation.
    fn authenticate(&mut self, user: &str, credential: Credential, key: &PublicKey) -> Auth {
        match self.identify(&credential) {
            Ok(identity) => {
                info!(peer = %self.peer, user, fingerprint = %identity.fingerprint, mapping = %identity.mapping, "authenticated");
                self.gate.authenticated();
                let watch = revoke_when_refused(
                    self.policy.clone(),
                    credential.clone(),
                    self.gate.clone(),
                    self.metrics.clone(),
                );
                tokio::spawn(watch);
                self.identity = Some((identity, credential));
                Auth::Accept
            }
            Err(refusal) => {
                self.refuse(&refusal, Some(key));
                Auth::reject()
            }
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, _user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        // A certificate is offered with its inner key, which no policy lists: every key is worth a signature, and
        // the verdict comes after it (`auth_publickey`, `auth_openssh_certificate`), refusals logged there.
        let _ = offer;
        Ok(Auth::Accept)
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        Ok(self.authenticate(user, Credential::Key(key.public_key.clone()), key.public_key))
    }

    async fn auth_openssh_certificate(&mut self, user: &str, certificate: &Certificate) -> Result<Auth, Self::Error> {
        let key = PublicKey::new(certificate.public_key().clone(), "");
        Ok(self.authenticate(user, Credential::Certificate(Box::new(certificate.clone())), &key))
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(&Refusal::Request("a session (shell, exec, pty or subsystem)"), None);
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The key is checked again at every channel: one removed from the policy, or past its notAfter, opens
        // nothing more even on a connection that authenticated before.
        let decision = match &self.identity {
            Some((_, credential)) => {
                let policy = self.policy.borrow().clone();
                let identity = policy.identify_credential(credential, Timestamp::now());
                let address = identity.and_then(|identity| policy.target(&identity, host, port));
                address.and_then(|address| self.rules.check(address).map(|()| address))
            }
            None => Err(Refusal::NotAuthenticated),
        };
        let address = match decision {
            Ok(address) => address,
            Err(refusal) => {
                self.refuse(&refusal, None);
                reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
                return Ok(());
            }
        };
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                warn!(%address, %error, "rsync pod did not accept the connection");
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
                return Ok(());
            }
            Err(_) => {
                warn!(%address, "rsync pod did not answer within {CONNECT_TIMEOUT:?}");
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
                return Ok(());
            }
        };
        reply.accept().await;
        let mapping = self.identity.as_ref().map(|(i, _)| i.mapping.clone()).unwrap_or_default();
        info!(peer = %self.peer, %mapping, %address, "relaying");
        tokio::spawn(relay(channel, stream, address, self.metrics.clone()));
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(&Refusal::Request("a Unix socket forward"), None);
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(&Refusal::Request("X11 forwarding"), None);
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn tcpip_forward(&mut self, _address: &str, _port: &mut u32, _s: &mut Session) -> Result<bool, Self::Error> {
        self.refuse(&Refusal::Request("a remote forward"), None);
        Ok(false)
    }

    async fn streamlocal_forward(&mut self, _path: &str, _session: &mut Session) -> Result<bool, Self::Error> {
        self.refuse(&Refusal::Request("a remote Unix socket forward"), None);
        Ok(false)
    }
}

/// Watches the policy for as long as the connection lives and cuts it (every relay on it too) once its credential
/// is refused: a key removed from the authorized set or past its `notAfter`, a certificate whose authority went or
/// whose validity ended.
async fn revoke_when_refused(
    mut policy: watch::Receiver<Arc<Policy>>,
    credential: Credential,
    gate: Gate,
    metrics: AgentMetrics,
) {
    loop {
        let now = Timestamp::now();
        let verdict = policy.borrow_and_update().identify_credential(&credential, now);
        let identity = match verdict {
            Ok(identity) => identity,
            Err(refusal) => {
                metrics.refusals.with_label_values(&[refusal.reason()]).inc();
                warn!(reason = refusal.reason(), "closing a connection whose key is refused now: {refusal}");
                gate.cut();
                return;
            }
        };
        // Look again when the policy changes or the key's notAfter passes, whichever comes first.
        let expiry = async {
            match identity.not_after {
                Some(end) => {
                    tokio::time::sleep(end.duration_since(now).unsigned_abs() + Duration::from_millis(10)).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = policy.changed() => if changed.is_err() { return },
            () = expiry => {}
            () = gate.closed() => return,
        }
    }
}

/// Copies bytes both ways between the client's channel and the rsync pod until both sides are done.
async fn relay(channel: Channel<Msg>, mut pod: TcpStream, address: SocketAddr, metrics: AgentMetrics) {
    let _ = pod.set_nodelay(true);
    metrics.relays.inc();
    let mut client = channel.into_stream();
    let started = std::time::Instant::now();
    match tokio::io::copy_bidirectional_with_sizes(&mut client, &mut pod, RELAY_BUFFER, RELAY_BUFFER).await {
        Ok((up, down)) => {
            metrics.relayed_bytes.with_label_values(&["to_pod"]).inc_by(up);
            metrics.relayed_bytes.with_label_values(&["from_pod"]).inc_by(down);
            info!(%address, to_pod = up, from_pod = down, seconds = started.elapsed().as_secs_f64(), "relay finished");
        }
        // The client closing its channel while the pod side shuts down is the normal end of a copy.
        Err(error) => debug!(%address, %error, "relay ended"),
    }
    metrics.relays.dec();
}
