//! Routes for families that were not negotiated with the peer (RFC 4760 §6,
//! RFC 5492): a speaker only exchanges NLRI of the families both sides
//! advertised. An UPDATE (or End-of-RIB) for any other family is ignored as
//! if it had not been received; the session stays up.

use petrel_bgp::wire::{Family, Message, Nlri};

/// How many routes of each unnegotiated family were dropped from one message
/// (announced plus withdrawn; an End-of-RIB counts as none but is reported).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dropped(pub Vec<(Family, u64)>);

impl Dropped {
    fn add(&mut self, fam: Family, n: u64) {
        match self.0.iter_mut().find(|(f, _)| *f == fam) {
            Some((_, c)) => *c += n,
            None => self.0.push((fam, n)),
        }
    }
}

/// Index of `fam` in [`Family::ALL`], for per-family counters.
pub fn family_index(fam: Family) -> usize {
    Family::ALL.iter().position(|f| *f == fam).unwrap_or(0)
}

/// Removes from `msg` the NLRI of families not in `negotiated`. Returns what
/// was removed, and `None` for the message when nothing of it remains to be
/// delivered (an End-of-RIB for an unnegotiated family). An UPDATE left
/// empty is still delivered: it is a valid message (it restarts the hold
/// timer) that changes nothing.
pub fn filter(msg: Message, negotiated: &[Family]) -> (Option<Message>, Dropped) {
    let mut dropped = Dropped::default();
    match msg {
        Message::Update(mut u) => {
            let mut keep = |list: &mut Vec<Nlri>| {
                list.retain(|n| {
                    let fam = Family::of(&n.prefix);
                    let ok = negotiated.contains(&fam);
                    if !ok {
                        dropped.add(fam, 1);
                    }
                    ok
                });
            };
            keep(&mut u.announced);
            keep(&mut u.withdrawn);
            (Some(Message::Update(u)), dropped)
        }
        Message::EndOfRib(fam) if !negotiated.contains(&fam) => {
            dropped.add(fam, 0);
            (None, dropped)
        }
        other => (Some(other), dropped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_bgp::wire::{PathAttributes, Update};
    use std::sync::Arc;

    fn nlri(s: &str) -> Nlri {
        Nlri::new(s.parse().unwrap())
    }

    #[test]
    fn ipv6_routes_from_an_ipv4_only_session_are_dropped() {
        let u = Update {
            withdrawn: vec![nlri("fd99:205::/48"), nlri("10.9.0.0/16")],
            attrs: Some(Arc::new(PathAttributes::default())),
            announced: vec![nlri("fd99:204::/48"), nlri("10.8.0.0/16")],
        };
        let (msg, dropped) = filter(Message::Update(u), &[Family::Ipv4Unicast]);
        let Some(Message::Update(u)) = msg else {
            panic!("expected an UPDATE, got {msg:?}");
        };
        assert_eq!(u.announced, vec![nlri("10.8.0.0/16")]);
        assert_eq!(u.withdrawn, vec![nlri("10.9.0.0/16")]);
        assert_eq!(dropped, Dropped(vec![(Family::Ipv6Unicast, 2)]));
    }

    #[test]
    fn negotiated_families_pass_untouched() {
        let u = Update {
            withdrawn: vec![nlri("fd99:205::/48")],
            attrs: None,
            announced: vec![nlri("10.8.0.0/16")],
        };
        let both = [Family::Ipv4Unicast, Family::Ipv6Unicast];
        let (msg, dropped) = filter(Message::Update(u.clone()), &both);
        assert_eq!(msg, Some(Message::Update(u)));
        assert!(dropped.0.is_empty());
    }

    #[test]
    fn end_of_rib_of_an_unnegotiated_family_is_ignored() {
        let (msg, dropped) = filter(
            Message::EndOfRib(Family::Ipv6Unicast),
            &[Family::Ipv4Unicast],
        );
        assert_eq!(msg, None);
        assert_eq!(dropped, Dropped(vec![(Family::Ipv6Unicast, 0)]));
        let (msg, _) = filter(
            Message::EndOfRib(Family::Ipv4Unicast),
            &[Family::Ipv4Unicast],
        );
        assert_eq!(msg, Some(Message::EndOfRib(Family::Ipv4Unicast)));
    }

    #[test]
    fn ipv4_routes_from_an_ipv6_only_session_are_dropped() {
        let u = Update {
            withdrawn: vec![],
            attrs: Some(Arc::new(PathAttributes::default())),
            announced: vec![nlri("10.8.0.0/16")],
        };
        let (msg, dropped) = filter(Message::Update(u), &[Family::Ipv6Unicast]);
        let Some(Message::Update(u)) = msg else {
            panic!("expected an UPDATE");
        };
        assert!(u.announced.is_empty());
        assert_eq!(dropped, Dropped(vec![(Family::Ipv4Unicast, 1)]));
    }
}
