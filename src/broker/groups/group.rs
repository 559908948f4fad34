//! One consumer group's membership state machine, Kafka's classic rebalance protocol:
//!
//! ```text
//!   Empty ──join──► PreparingRebalance ──all joined / deadline──► CompletingRebalance
//!     ▲                 ▲         ▲                                      │ leader's SyncGroup
//!     └─ last member ───┘         └──── join, leave, session expiry ◄── Stable
//! ```
//!
//! Pure and synchronous (time is passed in), so every transition is unit-tested without a
//! network; waiting callers get a oneshot receiver that completes when the round does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

/// The protocol type rill's coordinator serves: Kafka consumers with client-side assignors.
pub const CONSUMER_PROTOCOL: &str = "consumer";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The names Kafka uses in DescribeGroups and ListGroups.
    pub fn kafka_name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// What a JoinGroup carries, decoded.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    /// (assignor name, subscription metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394: JoinGroup v4+ must first be handed a member id (MEMBER_ID_REQUIRED).
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    /// None on success.
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only the leader receives the members with their subscriptions, to compute assignments.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResponse {
    fn error(error: ResponseError, member_id: &str) -> Self {
        JoinResponse {
            error: Some(error),
            generation: -1,
            protocol: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    /// None on success.
    pub error: Option<ResponseError>,
    pub assignment: Bytes,
}

impl SyncResponse {
    fn error(error: ResponseError) -> Self {
        SyncResponse {
            error: Some(error),
            assignment: Bytes::new(),
        }
    }
}

/// Either an answer now, or a receiver that gets it when the rebalance round completes.
pub enum Reply<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

#[derive(Debug)]
struct Member {
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    join_waiter: Option<oneshot::Sender<JoinResponse>>,
    sync_waiter: Option<oneshot::Sender<SyncResponse>>,
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    state: GroupState,
    protocol_type: Option<String>,
    protocol: Option<String>,
    generation: i32,
    leader: Option<String>,
    /// Ordered by member id, so "the first member" is well defined and stable.
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined with.
    pending: HashSet<String>,
    /// Static membership: group.instance.id → the member id currently holding it.
    instances: HashMap<String, String>,
    rebalance_deadline: Option<Instant>,
    /// A new group waits this long for more members before its first assignment
    /// (Kafka's group.initial.rebalance.delay.ms), so starting N consumers is one rebalance.
    initial_delay_until: Option<Instant>,
}

/// Session timeouts the coordinator accepts (Kafka's group.min/max.session.timeout.ms).
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    pub initial_rebalance_delay: Duration,
}

fn new_member_id(client_id: &str) -> String {
    let client = if client_id.is_empty() {
        "member"
    } else {
        client_id
    };
    format!("{client}-{}", uuid::Uuid::new_v4())
}

impl Group {
    pub fn new(id: &str) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            pending: HashSet::new(),
            instances: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// When a pending join round must be looked at again (initial delay or rebalance deadline).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.state != GroupState::PreparingRebalance {
            return None;
        }
        match (self.initial_delay_until, self.rebalance_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    pub fn members(&self) -> Vec<MemberDescription> {
        self.members
            .iter()
            .map(|(id, m)| MemberDescription {
                member_id: id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: self
                    .protocol
                    .as_ref()
                    .and_then(|p| m.protocols.iter().find(|(name, _)| name == p))
                    .map(|(_, meta)| meta.clone())
                    .unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect()
    }

    pub fn join(
        &mut self,
        req: JoinRequest,
        limits: &GroupLimits,
        now: Instant,
    ) -> Reply<JoinResponse> {
        let asked_id = req.member_id.clone();
        let fail = |error| Reply::Now(JoinResponse::error(error, &asked_id));
        if req.protocol_type != CONSUMER_PROTOCOL || req.protocols.is_empty() {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if self
            .protocol_type
            .as_deref()
            .is_some_and(|t| t != req.protocol_type)
        {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if req.session_timeout < limits.min_session_timeout
            || req.session_timeout > limits.max_session_timeout
        {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        if !self.members.is_empty() && !self.supports_any(&req.protocols, Some(&req.member_id)) {
            return fail(ResponseError::InconsistentGroupProtocol);
        }

        let mut req = req;
        if req.member_id.is_empty() {
            match &req.group_instance_id {
                // A static member coming back (e.g. after a restart) takes over its old
                // identity; the old member id is fenced.
                Some(instance) => {
                    let new_id = new_member_id(&req.client_id);
                    if let Some(old_id) = self.instances.get(instance).cloned() {
                        if let Some(mut old) = self.members.remove(&old_id) {
                            if let Some(waiter) = old.join_waiter.take() {
                                let _ = waiter.send(JoinResponse::error(
                                    ResponseError::FencedInstanceId,
                                    &old_id,
                                ));
                            }
                            if let Some(waiter) = old.sync_waiter.take() {
                                let _ = waiter
                                    .send(SyncResponse::error(ResponseError::FencedInstanceId));
                            }
                            if self.leader.as_deref() == Some(old_id.as_str()) {
                                self.leader = Some(new_id.clone());
                            }
                            let same_protocols = old.protocols == req.protocols;
                            let assignment = old.assignment.clone();
                            self.instances.insert(instance.clone(), new_id.clone());
                            req.member_id = new_id.clone();
                            self.add_member(&req, now);
                            if self.state == GroupState::Stable && same_protocols {
                                // Static membership's point: a restart without a rebalance.
                                if let Some(member) = self.members.get_mut(&new_id) {
                                    member.assignment = assignment;
                                }
                                return Reply::Now(self.join_response_for(&new_id));
                            }
                            return self.rejoin(&new_id, limits, now);
                        }
                    }
                    self.instances.insert(instance.clone(), new_id.clone());
                    req.member_id = new_id;
                }
                None if req.require_known_member_id => {
                    // KIP-394: hand out an id and let the client join again with it, so a
                    // client whose first JoinGroup timed out does not leave a ghost member.
                    let id = new_member_id(&req.client_id);
                    self.pending.insert(id.clone());
                    return Reply::Now(JoinResponse::error(ResponseError::MemberIdRequired, &id));
                }
                None => req.member_id = new_member_id(&req.client_id),
            }
        } else if self.pending.remove(&req.member_id) {
            // The second half of the KIP-394 handshake.
        } else if let Some(member) = self.members.get(&req.member_id) {
            if member.group_instance_id != req.group_instance_id {
                return fail(ResponseError::FencedInstanceId);
            }
        } else {
            // Lenient: an id we do not know, from a client with a static instance id we do not
            // know either, is a restarted static member; anything else is stale.
            match &req.group_instance_id {
                Some(instance) if !self.instances.contains_key(instance) => {
                    self.instances
                        .insert(instance.clone(), req.member_id.clone());
                }
                _ => return fail(ResponseError::UnknownMemberId),
            }
        }
        let id = req.member_id.clone();
        self.add_member(&req, now);
        self.rejoin(&id, limits, now)
    }

    fn add_member(&mut self, req: &JoinRequest, now: Instant) {
        let member = self
            .members
            .entry(req.member_id.clone())
            .or_insert_with(|| Member {
                group_instance_id: req.group_instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                session_timeout: req.session_timeout,
                rebalance_timeout: req.rebalance_timeout,
                protocols: req.protocols.clone(),
                assignment: Bytes::new(),
                last_seen: now,
                join_waiter: None,
                sync_waiter: None,
            });
        member.protocols = req.protocols.clone();
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.last_seen = now;
        self.protocol_type = Some(req.protocol_type.clone());
    }

    /// Parks `member_id`'s join and moves the group toward (or through) a rebalance.
    fn rejoin(
        &mut self,
        member_id: &str,
        limits: &GroupLimits,
        now: Instant,
    ) -> Reply<JoinResponse> {
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(limits, now);
        }
        let (tx, rx) = oneshot::channel();
        if let Some(member) = self.members.get_mut(member_id) {
            if let Some(previous) = member.join_waiter.replace(tx) {
                let _ = previous.send(JoinResponse::error(
                    ResponseError::UnknownMemberId,
                    member_id,
                ));
            }
        }
        self.try_complete_join(now);
        Reply::Wait(rx)
    }

    fn prepare_rebalance(&mut self, limits: &GroupLimits, now: Instant) {
        let was_empty = self.state == GroupState::Empty;
        // Members waiting for their assignment learn that this round is over.
        for member in self.members.values_mut() {
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(SyncResponse::error(ResponseError::RebalanceInProgress));
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(limits.initial_rebalance_delay);
        self.state = GroupState::PreparingRebalance;
        self.rebalance_deadline = Some(now + timeout);
        self.initial_delay_until =
            was_empty.then(|| now + limits.initial_rebalance_delay.min(timeout));
        tracing::info!(group = %self.id, generation = self.generation, "preparing rebalance");
    }

    /// Completes the join phase when every member has rejoined (after a new group's initial
    /// delay), or when the rebalance deadline passes (members that did not rejoin are dropped).
    fn try_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some());
        let delay_over = self.initial_delay_until.is_none_or(|t| now >= t);
        let deadline_passed = self.rebalance_deadline.is_some_and(|t| now >= t);
        if !(deadline_passed || all_joined && delay_over) {
            return;
        }
        let missing: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join_waiter.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in missing {
            tracing::info!(group = %self.id, member = %id, "member did not rejoin in time; removed");
            self.remove_member(&id);
        }
        self.generation += 1;
        self.rebalance_deadline = None;
        self.initial_delay_until = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = self.choose_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        for member in self.members.values_mut() {
            member.assignment = Bytes::new();
        }
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let response = self.join_response_for(&id);
            if let Some(waiter) = self.members.get_mut(&id).and_then(|m| m.join_waiter.take()) {
                let _ = waiter.send(response);
            }
        }
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(),
            protocol = self.protocol.as_deref().unwrap_or(""), "rebalance: members joined");
    }

    fn join_response_for(&self, member_id: &str) -> JoinResponse {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members()
                .into_iter()
                .map(|m| (m.member_id, m.group_instance_id, m.metadata))
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            error: None,
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }

    /// Whether some protocol in `protocols` is supported by every other member.
    fn supports_any(&self, protocols: &[(String, Bytes)], except: Option<&str>) -> bool {
        protocols.iter().any(|(name, _)| {
            self.members
                .iter()
                .filter(|(id, _)| Some(id.as_str()) != except)
                .all(|(_, m)| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// Kafka's vote: among protocols every member supports, each member votes for the one it
    /// prefers most; the most votes wins (ties by the leader's preference).
    fn choose_protocol(&self) -> Option<String> {
        let common: Vec<&String> = self
            .members
            .values()
            .next()?
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == *name))
            })
            .collect();
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member.protocols.iter().find(|(n, _)| common.contains(&n)) {
                *votes.entry(name).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        common
            .into_iter()
            .find(|name| votes.get(name) == Some(&best))
            .cloned()
    }

    /// Checks that a request comes from a current member of the current generation.
    pub fn check_member(
        &self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = instance {
            if let Some(owner) = self.instances.get(instance) {
                if owner != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    pub fn sync(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Reply<SyncResponse> {
        if let Err(error) = self.check_member(member_id, instance, generation) {
            return Reply::Now(SyncResponse::error(error));
        }
        self.touch(member_id, now);
        match self.state {
            GroupState::Empty => Reply::Now(SyncResponse::error(ResponseError::UnknownMemberId)),
            GroupState::PreparingRebalance => {
                Reply::Now(SyncResponse::error(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => Reply::Now(SyncResponse {
                error: None,
                assignment: self
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default(),
            }),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(member) = self.members.get_mut(member_id) {
                    member.sync_waiter = Some(tx);
                }
                if self.leader.as_deref() == Some(member_id) {
                    for (id, assignment) in assignments {
                        if let Some(member) = self.members.get_mut(&id) {
                            member.assignment = assignment;
                        }
                    }
                    self.state = GroupState::Stable;
                    for member in self.members.values_mut() {
                        if let Some(waiter) = member.sync_waiter.take() {
                            let _ = waiter.send(SyncResponse {
                                error: None,
                                assignment: member.assignment.clone(),
                            });
                        }
                    }
                    tracing::info!(group = %self.id, generation = self.generation, "rebalance complete: group stable");
                }
                Reply::Wait(rx)
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Empty {
            return Err(ResponseError::UnknownMemberId);
        }
        self.check_member(member_id, instance, generation)?;
        self.touch(member_id, now);
        match self.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Any valid request from a member keeps its session alive.
    pub fn touch(&mut self, member_id: &str, now: Instant) {
        if let Some(member) = self.members.get_mut(member_id) {
            member.last_seen = now;
        }
    }

    /// LeaveGroup for one member, by member id or (static members) by instance id.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        limits: &GroupLimits,
        now: Instant,
    ) -> Result<(), ResponseError> {
        let id = match instance {
            Some(instance) => match self.instances.get(instance) {
                Some(owner) if member_id.is_empty() || owner == member_id => owner.clone(),
                Some(_) => return Err(ResponseError::FencedInstanceId),
                None => return Err(ResponseError::UnknownMemberId),
            },
            None => member_id.to_string(),
        };
        if self.pending.remove(&id) {
            return Ok(());
        }
        if !self.members.contains_key(&id) {
            return Err(ResponseError::UnknownMemberId);
        }
        tracing::info!(group = %self.id, member = %id, "member left");
        self.remove_member(&id);
        self.after_membership_change(limits, now);
        Ok(())
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(mut member) = self.members.remove(id) {
            if let Some(instance) = &member.group_instance_id {
                if self.instances.get(instance).map(String::as_str) == Some(id) {
                    self.instances.remove(instance);
                }
            }
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(JoinResponse::error(ResponseError::UnknownMemberId, id));
            }
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(SyncResponse::error(ResponseError::UnknownMemberId));
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    fn after_membership_change(&mut self, limits: &GroupLimits, now: Instant) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.state = GroupState::Empty;
                    self.generation += 1;
                    self.protocol = None;
                } else {
                    self.prepare_rebalance(limits, now);
                }
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty => {}
        }
    }

    /// Expires members whose session lapsed and completes joins whose deadline passed.
    /// Members parked in a JoinGroup are waiting on us, not silent, so they do not expire.
    pub fn tick(&mut self, limits: &GroupLimits, now: Instant) {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.join_waiter.is_none() && now.duration_since(m.last_seen) > m.session_timeout
            })
            .map(|(id, _)| id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                tracing::info!(group = %self.id, member = %id, "session timed out; member removed");
                self.remove_member(id);
            }
            self.after_membership_change(limits, now);
        }
        self.try_complete_join(now);
        if self.state == GroupState::Empty && self.members.is_empty() {
            self.protocol_type = None;
        }
    }
}

#[cfg(test)]
mod tests;
