use super::*;

fn limits() -> GroupLimits {
    GroupLimits {
        min_session_timeout: Duration::from_secs(1),
        max_session_timeout: Duration::from_secs(300),
        initial_rebalance_delay: Duration::from_millis(100),
    }
}

fn request(member_id: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        group_instance_id: instance.map(str::to_string),
        client_id: "test".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: CONSUMER_PROTOCOL.into(),
        protocols: vec![
            ("cooperative-sticky".into(), Bytes::from_static(b"m")),
            ("range".into(), Bytes::from_static(b"r")),
        ],
        require_known_member_id: true,
    }
}

fn now_value<T>(reply: Reply<T>) -> T {
    match reply {
        Reply::Now(value) => value,
        Reply::Wait(_) => panic!("expected an immediate answer"),
    }
}

fn waiting<T>(reply: Reply<T>) -> oneshot::Receiver<T> {
    match reply {
        Reply::Wait(rx) => rx,
        Reply::Now(_) => panic!("expected to wait"),
    }
}

/// Joins with the KIP-394 handshake and returns (member id, pending join receiver).
fn join(group: &mut Group, t: Instant) -> (String, oneshot::Receiver<JoinResponse>) {
    let first = now_value(group.join(request("", None), &limits(), t));
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    let rx = waiting(group.join(request(&first.member_id, None), &limits(), t));
    (first.member_id, rx)
}

#[test]
fn two_members_join_sync_and_get_their_assignments() {
    let t0 = Instant::now();
    let mut group = Group::new("g");
    let (a, mut rx_a) = join(&mut group, t0);
    let (b, mut rx_b) = join(&mut group, t0);
    // A new group waits out its initial delay before the first assignment.
    assert!(rx_a.try_recv().is_err());
    group.tick(&limits(), t0 + Duration::from_millis(150));
    let (ja, jb) = (
        rx_a.try_recv().expect("a joined"),
        rx_b.try_recv().expect("b joined"),
    );
    assert_eq!(ja.generation, 1);
    assert_eq!(ja.generation, jb.generation);
    assert_eq!(ja.protocol.as_deref(), Some("cooperative-sticky"));
    let leader = ja.leader.clone();
    let follower = if leader == a { b.clone() } else { a.clone() };
    let leader_join = if ja.member_id == leader { &ja } else { &jb };
    assert_eq!(leader_join.members.len(), 2);
    let t1 = t0 + Duration::from_millis(200);
    let mut follower_sync = waiting(group.sync(&follower, None, 1, vec![], t1));
    let assignments = vec![
        (leader.clone(), Bytes::from_static(b"L")),
        (follower.clone(), Bytes::from_static(b"F")),
    ];
    let mut leader_sync = waiting(group.sync(&leader, None, 1, assignments, t1));
    assert_eq!(group.state(), GroupState::Stable);
    assert_eq!(
        follower_sync.try_recv().expect("follower").assignment,
        Bytes::from_static(b"F")
    );
    assert_eq!(
        leader_sync.try_recv().expect("leader").assignment,
        Bytes::from_static(b"L")
    );
    assert_eq!(group.heartbeat(&follower, None, 1, t1), Ok(()));
}

#[test]
fn stale_generations_and_unknown_members_are_refused() {
    let t0 = Instant::now();
    let mut group = Group::new("g");
    let (a, mut rx) = join(&mut group, t0);
    group.tick(&limits(), t0 + Duration::from_secs(1));
    let joined = rx.try_recv().expect("joined");
    assert_eq!(
        group.heartbeat(&a, None, joined.generation + 1, t0),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        group.heartbeat("nobody", None, joined.generation, t0),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        now_value(group.sync("nobody", None, joined.generation, vec![], t0)).error,
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn wrong_protocol_type_and_session_timeout_are_refused() {
    let mut group = Group::new("g");
    let mut req = request("", None);
    req.protocol_type = "connect".into();
    assert_eq!(
        now_value(group.join(req, &limits(), Instant::now())).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    let mut req = request("", None);
    req.session_timeout = Duration::from_millis(10);
    assert_eq!(
        now_value(group.join(req, &limits(), Instant::now())).error,
        Some(ResponseError::InvalidSessionTimeout)
    );
    let mut req = request("", None);
    req.protocols.clear();
    assert_eq!(
        now_value(group.join(req, &limits(), Instant::now())).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
}

#[test]
fn a_silent_member_is_evicted_and_the_rest_rebalance() {
    let t0 = Instant::now();
    let mut group = Group::new("g");
    let (a, mut rx_a) = join(&mut group, t0);
    let (b, mut rx_b) = join(&mut group, t0);
    group.tick(&limits(), t0 + Duration::from_millis(150));
    let (ja, _) = (rx_a.try_recv().expect("a"), rx_b.try_recv().expect("b"));
    let leader = ja.leader.clone();
    let assignments = vec![
        (a.clone(), Bytes::from_static(b"1")),
        (b.clone(), Bytes::from_static(b"2")),
    ];
    let _ = group.sync(&leader, None, 1, assignments, t0);
    let other = if leader == a { b.clone() } else { a.clone() };
    let _ = group.sync(&other, None, 1, vec![], t0);
    assert_eq!(group.state(), GroupState::Stable);
    // Only `a` keeps heartbeating; `b` goes silent past its 10 s session.
    let t1 = t0 + Duration::from_secs(6);
    assert_eq!(group.heartbeat(&a, None, 1, t1), Ok(()));
    group.tick(&limits(), t0 + Duration::from_secs(11));
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        group.heartbeat(&a, None, 1, t1),
        Err(ResponseError::RebalanceInProgress)
    );
    let mut rx = waiting(group.join(request(&a, None), &limits(), t0 + Duration::from_secs(11)));
    let rejoined = rx
        .try_recv()
        .expect("only a is left, so the round completes at once");
    assert_eq!(
        (rejoined.generation, rejoined.leader.as_str()),
        (2, a.as_str())
    );
    assert_eq!(rejoined.members.len(), 1);
}

#[test]
fn leaving_last_member_empties_the_group() {
    let t0 = Instant::now();
    let mut group = Group::new("g");
    let (a, mut rx) = join(&mut group, t0);
    group.tick(&limits(), t0 + Duration::from_secs(1));
    rx.try_recv().expect("joined");
    assert_eq!(group.leave(&a, None, &limits(), t0), Ok(()));
    assert_eq!(group.state(), GroupState::Empty);
    assert!(group.is_empty());
    assert_eq!(
        group.leave(&a, None, &limits(), t0),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn a_restarted_static_member_keeps_its_assignment_without_a_rebalance() {
    let t0 = Instant::now();
    let mut group = Group::new("g");
    let mut rx = waiting(group.join(request("", Some("host-1")), &limits(), t0));
    group.tick(&limits(), t0 + Duration::from_secs(1));
    let joined = rx.try_recv().expect("joined");
    let assignment = vec![(joined.member_id.clone(), Bytes::from_static(b"P0"))];
    let _ = group.sync(&joined.member_id, Some("host-1"), 1, assignment, t0);
    assert_eq!(group.state(), GroupState::Stable);
    // The process restarts: empty member id, same instance id.
    let again = now_value(group.join(request("", Some("host-1")), &limits(), t0));
    assert_eq!(again.error, None);
    assert_eq!(again.generation, 1);
    assert_eq!(group.state(), GroupState::Stable);
    let sync = now_value(group.sync(&again.member_id, Some("host-1"), 1, vec![], t0));
    assert_eq!(sync.assignment, Bytes::from_static(b"P0"));
    // The old incarnation is fenced.
    assert_eq!(
        group.heartbeat(&joined.member_id, Some("host-1"), 1, t0),
        Err(ResponseError::FencedInstanceId)
    );
}

#[test]
fn a_member_that_vanishes_mid_rebalance_is_dropped_at_the_deadline() {
    let t0 = Instant::now();
    let mut group = Group::new("g");
    let (a, mut rx_a) = join(&mut group, t0);
    let (b, mut rx_b) = join(&mut group, t0);
    group.tick(&limits(), t0 + Duration::from_millis(150));
    rx_a.try_recv().expect("a");
    rx_b.try_recv().expect("b");
    // A third member joins: a rebalance starts; `a` rejoins, `b` has vanished.
    let (_c, mut rx_c) = join(&mut group, t0 + Duration::from_secs(1));
    let mut rx_a = waiting(group.join(request(&a, None), &limits(), t0 + Duration::from_secs(1)));
    group.tick(&limits(), t0 + Duration::from_secs(2));
    assert!(
        rx_a.try_recv().is_err(),
        "waits for b until the rebalance timeout"
    );
    // The rebalance timeout (30 s) passes: b is dropped, the others get generation 2.
    group.tick(&limits(), t0 + Duration::from_secs(32));
    let joined = rx_a.try_recv().expect("a completes without b");
    assert_eq!(joined.generation, 2);
    assert!(rx_c.try_recv().is_ok());
    assert_eq!(
        group.heartbeat(&b, None, 1, t0 + Duration::from_secs(32)),
        Err(ResponseError::UnknownMemberId)
    );
}
