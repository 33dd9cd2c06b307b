//! The upgrading phase: the HTTP request (parsed by `wire::upgrade`), the identity in its path,
//! the security profile's proof (Basic auth or the client certificate), the 101 or the refusal.
//! It ends as a [`Session`] ([`Upgrading::open`]) or with the connection.

use super::*;

/// A connection before its upgrade: what its listener and its PROXY header said of it.
pub struct Upgrading {
    pub peer: SocketAddr,
    /// The security profile of the listener it came in on.
    pub profile: Profile,
    /// That listener takes TLS done by the balancer (`tls_offload`): the proof is `ssl`.
    pub offloaded: bool,
    /// The PROXY v2 header's SSL TLV, once read.
    pub ssl: Option<wire::proxy::Ssl>,
    /// The OCPP versions that listener speaks, in order of preference.
    pub protocols: Protocols,
    /// See [`Connection::holder_stamp`].
    pub holder_stamp: Option<std::num::NonZeroU32>,
}

impl Upgrading {
    pub(super) fn new(
        peer: SocketAddr,
        profile: Profile,
        protocols: Protocols,
        offloaded: bool,
    ) -> Box<Upgrading> {
        Box::new(Upgrading {
            peer,
            profile,
            offloaded,
            ssl: None,
            protocols,
            holder_stamp: None,
        })
    }

    /// The upgrade is answered: `cp`'s session opens, in `version`, served by `processor`.
    pub(super) fn open(
        self,
        cp: ChargePointId,
        version: Version,
        processor: u16,
        now_ms: u64,
    ) -> Session {
        Session::new(cp, version, processor, now_ms)
    }
}

impl Connection {
    pub(super) fn upgrade(
        &mut self,
        cx: &mut LoopContext,
        key: usize,
        data: &mut [u8],
    ) -> Consumed {
        let Phase::Upgrading(upgrading) = &self.phase else {
            return Consumed::All(0);
        };
        let protocols = upgrading.protocols;
        let names = protocols.names();
        let offers = &names[..protocols.versions().len()];
        let (request, len) = match upgrade::parse(data, offers) {
            Parsed::Partial => return Consumed::All(0),
            Parsed::Refused(refusal) => {
                return Consumed::Stopped(data.len(), self.refuse(cx, refusal));
            }
            Parsed::Upgrade { request, len } => (request, len),
        };
        if self.over_capacity {
            let refusal = Refusal::ServiceUnavailable {
                retry_after_secs: cx.retry_after_secs(),
            };
            return Consumed::Stopped(data.len(), self.refuse(cx, refusal));
        }
        let rule = cx.limits.identities;
        let id =
            upgrade::charge_point_id(&cx.limits.path_prefix, request.path, |id| rule.allows(id))
                .filter(|id| {
                    cx.known_identities
                        .as_ref()
                        .is_none_or(|known| known.contains(id))
                });
        let Some(id) = id else {
            return Consumed::Stopped(data.len(), self.refuse(cx, Refusal::NotFound));
        };
        if let Some(tls) = self.transport.tls() {
            cx.stats().tls_handshakes.inc();
            if tls.resumed() {
                cx.stats().tls_resumptions.inc();
            }
        }
        let (auth, pinned) = match self.authenticate(cx, &id, request.authorization) {
            Ok(proof) => proof,
            Err(refusal) => return Consumed::Stopped(data.len(), self.refuse(cx, refusal)),
        };
        let version = request.protocol.map(|i| protocols.versions()[i]);
        cx.scratch.clear();
        upgrade::write_switching(
            &mut cx.scratch,
            request.key,
            version.map(Version::subprotocol),
        );
        if self.transport.send(&mut cx.wire, &cx.scratch).is_err() {
            return Consumed::Stopped(data.len(), Transition::Remove(CloseCause::ConnectionLost));
        }
        let Phase::Upgrading(upgrading) = self.phase.take() else {
            return Consumed::Stopped(data.len(), Transition::Remove(CloseCause::ConnectionLost));
        };
        if let Some(timer) = self.timer.take() {
            cx.wheel.cancel(timer);
        }
        let cp: ChargePointId = id.into();
        let Some(version) = version else {
            cx.stats().handshakes_rejected.inc();
            cx.labelled().closes[CloseCause::NoSubprotocol.index()].inc();
            let spoken = offers.join(", ");
            debug!("cp={cp} loop={} offered none of {spoken}", cx.index);
            // Opened only to be failed: the close frame needs a WebSocket. What it holds from
            // now on counts as an upgraded connection's, as it would once upgraded.
            self.phase = Phase::Open(upgrading.open(cp, Version::V16, 0, cx.now_ms()));
            self.upgraded(cx);
            let t = self.fail_with(
                cx,
                key,
                1002,
                no_subprotocol(protocols),
                CloseCause::NoSubprotocol,
                false,
            );
            return Consumed::Stopped(data.len(), t);
        };
        match version {
            Version::V16 => cx.stats().handshakes_v16.inc(),
            Version::V201 => cx.stats().handshakes_v201.inc(),
            Version::V21 => cx.stats().handshakes_v21.inc(),
        }
        cx.stats().handshakes_ok.inc();
        let processor = shard_of(&cp, cx.links.count()) as u16;
        debug!(
            "cp={cp} loop={} connected from {}",
            cx.index, upgrading.peer
        );
        let certificate = match auth {
            Auth::Certificate => self
                .transport
                .tls_mut()
                .and_then(|tls| tls.take_certificate_facts()),
            _ => None,
        };
        let seq = cx
            .stats
            .sessions_opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        cx.links.push_control(
            processor,
            Entry::Connected {
                conn: self.id(cx, key),
                cp: ChargePointId::clone(&cp),
                seq,
                peer: upgrading.peer,
                auth,
                profile: upgrading.profile,
                pinned,
                version,
                certificate,
            },
        );
        self.phase = Phase::Open(upgrading.open(cp, version, processor, cx.now_ms()));
        self.upgraded(cx);
        let delay = cx.ping_delay(0);
        self.arm(cx, key, delay);
        Consumed::All(len)
    }

    /// Checks that the connection is `id`'s, as its listener's profile requires: Basic auth
    /// (profiles 1 and 2) or the client certificate's CN (3), on a listener no lower than the
    /// identity must use ([`security::required_profile`]). An address locked out for its
    /// failures is refused first, before any hashing. A refusal is counted, journaled (why,
    /// never the password) within its address's allowance, and logged within the loop's
    /// warning budget. On success: how the connection proved the identity, and whether its
    /// credentials line pins its profile (then the processor does not apply the one remembered).
    pub(super) fn authenticate(
        &self,
        cx: &mut LoopContext,
        id: &str,
        authorization: Option<&[u8]>,
    ) -> Result<(Auth, bool), Refusal> {
        let Phase::Upgrading(upgrading) = &self.phase else {
            return Err(Refusal::BadRequest);
        };
        let (peer, profile) = (upgrading.peer, upgrading.profile);
        if profile != Profile::Unsecured
            && let Some(retry_after_secs) = cx.security.lockouts.locked(peer.ip(), cx.now)
        {
            cx.stats().locked_out_refusals.inc();
            return Err(Refusal::TooManyFailures { retry_after_secs });
        }
        let (required, pinned) = security::required_profile(&cx.security, id);
        // TLS done by the balancer: its SSL TLV stands for the handshake (and, on profile 3,
        // for the certificate check).
        let offloaded = || {
            if upgrading.offloaded {
                security::check_offloaded(id, upgrading.ssl.as_ref(), profile)
            } else {
                Ok(())
            }
        };
        let checked = if profile < required {
            Err(AuthFailure::ProfileTooLow)
        } else {
            match profile {
                Profile::Unsecured => Ok(Auth::None),
                Profile::BasicAuth | Profile::TlsBasicAuth => match &cx.security.credentials {
                    Some(credentials) => offloaded()
                        .and_then(|()| security::check_basic(credentials, id, authorization))
                        .map(|()| Auth::Password),
                    None => Err(AuthFailure::WrongPassword),
                },
                Profile::MutualTls if upgrading.offloaded => {
                    offloaded().map(|()| Auth::Certificate)
                }
                Profile::MutualTls => {
                    let tls = self.transport.tls();
                    let presented = tls.map(|t| t.client_certificate());
                    let revoked = tls
                        .and_then(|t| t.client_certificate_id())
                        .is_some_and(|id| cx.revoked(&id));
                    // A session resumed from a ticket issued before the revocation.
                    security::check_certificate(id, presented).and({
                        if revoked {
                            Err(AuthFailure::Revoked)
                        } else {
                            Ok(Auth::Certificate)
                        }
                    })
                }
            }
        };
        let failure = match checked {
            Ok(auth) => return Ok((auth, pinned)),
            Err(failure) => failure,
        };
        let (refusal, counter) = if failure == AuthFailure::ProfileTooLow {
            (Refusal::ProfileTooLow, &cx.stats().profile_refusals)
        } else if failure == AuthFailure::Revoked {
            (Refusal::Forbidden, &cx.stats().certificates_revoked)
        } else if matches!(failure, AuthFailure::NotTls | AuthFailure::NotVerified) {
            (Refusal::Forbidden, &cx.stats().tls_offload_refusals)
        } else if failure.forbidden() {
            (Refusal::Forbidden, &cx.stats().certificate_mismatches)
        } else {
            (Refusal::Unauthorized, &cx.stats().auth_failures)
        };
        counter.inc();
        // Accounted to the address, never to the identity it names.
        let refused = cx.security.lockouts.refused(peer.ip(), cx.now);
        if let Some(seconds) = refused.locked_for {
            cx.stats().auth_lockouts.inc();
            if cx.warnings.allow(cx.now_ms()) {
                warn!(
                    "loop={} peer={peer} locked out for {seconds} s: too many failed authentications",
                    cx.index
                );
            }
        }
        if cx.warnings.allow(cx.now_ms()) {
            warn!(
                "cp={id} loop={} peer={peer} refused ({}): {failure}",
                cx.index,
                refusal.status()
            );
        }
        if !refused.journal {
            cx.stats().refusals_unjournaled.inc();
        } else if cx.journal {
            let cp: ChargePointId = id.into();
            let event = Event {
                at: std::time::SystemTime::now(),
                cp: &cp,
                kind: EventKind::Refused {
                    peer,
                    status: refusal.status(),
                    reason: failure.as_str(),
                },
            };
            let processor = shard_of(&cp, cx.links.count()) as u16;
            cx.links.record(processor, &cp, &event);
        }
        Err(refusal)
    }

    /// Answers the upgrade request with an HTTP error and ends the connection.
    pub(super) fn refuse(&mut self, cx: &mut LoopContext, refusal: Refusal) -> Transition {
        if !self.over_capacity {
            cx.stats().handshakes_rejected.inc();
        }
        cx.scratch.clear();
        refusal.write(&mut cx.scratch);
        let _ = self.transport.send(&mut cx.wire, &cx.scratch);
        debug!("loop={} upgrade refused: {}", cx.index, refusal.status());
        Transition::Remove(CloseCause::ConnectionLost)
    }
}

/// The close reason for a charge point that offered none of the listener's versions.
fn no_subprotocol(protocols: Protocols) -> &'static str {
    use Version::*;
    match protocols.versions() {
        [V16] => "subprotocol ocpp1.6 required",
        [V201] => "subprotocol ocpp2.0.1 required",
        [V21] => "subprotocol ocpp2.1 required",
        [V201, V16] | [V16, V201] => "subprotocol ocpp2.0.1 or ocpp1.6 required",
        [V21, V201] | [V201, V21] => "subprotocol ocpp2.1 or ocpp2.0.1 required",
        [V21, V16] | [V16, V21] => "subprotocol ocpp2.1 or ocpp1.6 required",
        _ => "subprotocol ocpp2.1, ocpp2.0.1 or ocpp1.6 required",
    }
}
