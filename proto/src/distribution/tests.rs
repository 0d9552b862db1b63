//! Unit tests of the placement modes and the [`Locator`](super::Locator): names, placement on
//! listed nodes, weights, `next`, fallbacks and moved shares.

use super::locator::moved_share_of;
use super::*;

#[test]
fn every_mode_has_a_unique_name_that_round_trips() {
    let mut names = std::collections::HashSet::new();
    for &d in Distribution::ALL {
        assert!(names.insert(d.name()), "{d} named twice");
        assert_eq!(Distribution::from_name(d.name()), Some(d));
        assert_eq!(d.to_string(), d.name());
    }
    assert_eq!(Distribution::ALL[0], Distribution::default());
    assert_eq!(Distribution::from_name("Ketama"), None);
    for &i in NodeIdentity::ALL {
        assert_eq!(NodeIdentity::from_name(i.name()), Some(i));
    }
}

#[test]
fn every_mode_places_on_a_listed_node_and_none_without_nodes() {
    let ids = ["a:11211", "b:11212", "c:3"];
    let none: [&str; 0] = [];
    for &d in Distribution::ALL {
        let locator = Locator::new(d, &ids);
        assert_eq!(locator.distribution(), d);
        let mut used = [false; 3];
        for i in 0..300 {
            let key = format!("k{i}é");
            used[locator.locate(key.as_bytes()).unwrap()] = true;
        }
        assert_eq!(used, [true; 3], "{d}");
        assert_eq!(Locator::new(d, &none).locate(b"k"), None, "{d}");
        assert!(Locator::new(d, &none).is_empty());
    }
}

#[test]
fn weights_shift_keys_only_in_modes_that_have_them() {
    let ids = ["a:1", "b:1", "c:1"];
    let heavy = [("a:1", 8), ("b:1", 1), ("c:1", 1)];
    let flat = [("a:1", 1), ("b:1", 1), ("c:1", 1)];
    for &d in Distribution::ALL {
        let plain = Locator::new(d, &ids);
        let weighted = Locator::weighted(d, &heavy);
        let on_a = (0..3000)
            .filter(|i| weighted.locate(format!("w{i}").as_bytes()) == Some(0))
            .count();
        let moved = (0..3000)
            .filter(|i| {
                let k = format!("w{i}");
                plain.locate(k.as_bytes()) != weighted.locate(k.as_bytes())
            })
            .count();
        if d.honours_weights() {
            assert!(on_a > 2000, "{d}: {on_a} of 3000 on the weight-8 node");
        } else {
            assert_eq!(moved, 0, "{d} has no weights");
        }
        // All weights 1: the same as no weights, except in spymemcached's modes (the
        // float formula), which at 3 nodes also gives 160 points.
        let flat = Locator::weighted(d, &flat);
        for i in 0..500 {
            let k = format!("f{i}");
            assert_eq!(plain.locate(k.as_bytes()), flat.locate(k.as_bytes()), "{d}");
        }
    }
}

#[test]
fn consistent_libmemcached_md5_with_a_heavy_node_is_ketama() {
    let nodes = [("a:11211", 2), ("b:11211", 1), ("c:5", 1)];
    let a = Locator::weighted(Distribution::ConsistentLibmemcachedMd5, &nodes);
    let b = Locator::weighted(Distribution::Ketama, &nodes);
    for i in 0..1000 {
        let k = format!("key{i}");
        assert_eq!(a.locate(k.as_bytes()), b.locate(k.as_bytes()));
    }
}

#[test]
fn modula_modes_are_hash_mod_n_in_list_order() {
    let ids = ["x:1", "y:1", "z:1", "w:1", "v:1"];
    let l = Locator::new(Distribution::ModulaLibmemcached, &ids);
    let j = Locator::new(Distribution::ModulaJava, &ids);
    for key in ["a", "user:1", "clé"] {
        let k = key.as_bytes();
        assert_eq!(
            l.locate(k),
            Some((hash::one_at_a_time(k) % 5) as usize),
            "{key}"
        );
        assert_eq!(
            j.locate(k),
            Some((hash::java_string_hash(k) % 5) as usize),
            "{key}"
        );
    }
}

fn node_list(picks: &[u8]) -> Vec<String> {
    picks
        .iter()
        .map(|i| format!("n{i}.example:11211"))
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// `next` from any previous list gives what a fresh build gives, in every mode, with
    /// and without weights.
    #[test]
    fn next_places_as_a_fresh_build(
        old in proptest::collection::vec(0u8..12, 0..8),
        new in proptest::collection::vec(0u8..12, 0..8),
        weights in proptest::collection::vec(0u32..4, 8),
    ) {
        let (old, new) = (node_list(&old), node_list(&new));
        let weights = &weights[..new.len()];
        let pairs: Vec<(&str, u32)> =
            new.iter().map(String::as_str).zip(weights.iter().copied()).collect();
        for &d in Distribution::ALL {
            let prev = Locator::new(d, &old);
            let plain = prev.next(&new, None);
            let weighted = prev.next(&new, Some(weights));
            let (fresh, fresh_weighted) = (Locator::new(d, &new), Locator::weighted(d, &pairs));
            proptest::prop_assert_eq!(plain.len(), new.len());
            proptest::prop_assert_eq!(plain.distribution(), d);
            proptest::prop_assert!(plain.ids().iter().map(|id| &**id).eq(new.iter().map(String::as_str)));
            for i in 0..200 {
                let k = format!("key-{i}");
                proptest::prop_assert_eq!(plain.locate(k.as_bytes()), fresh.locate(k.as_bytes()), "{}", d);
                proptest::prop_assert_eq!(
                    weighted.locate(k.as_bytes()),
                    fresh_weighted.locate(k.as_bytes()),
                    "{} weighted", d
                );
            }
        }
    }
}

#[test]
fn next_handles_growth_to_many_nodes_and_back_to_none() {
    let many: Vec<String> = (0..2_000).map(|i| format!("n{i}:11211")).collect();
    let none: [&str; 0] = [];
    let ring = Locator::new(Distribution::Ring, &none).next(&many, None);
    let fresh = Locator::new(Distribution::Ring, &many);
    let shrunk = ring.next(&many[..1_000], None);
    let fresh_shrunk = Locator::new(Distribution::Ring, &many[..1_000]);
    for i in 0..2_000 {
        let k = format!("k{i}");
        assert_eq!(ring.locate(k.as_bytes()), fresh.locate(k.as_bytes()));
        assert_eq!(
            shrunk.locate(k.as_bytes()),
            fresh_shrunk.locate(k.as_bytes())
        );
    }
    assert_eq!(shrunk.next(&none, None).locate(b"k"), None);
}

#[test]
fn with_every_node_usable_locate_usable_is_locate() {
    let ids = ["a:11211", "b:11212", "c:3", "d:4", "e:5"];
    for &d in Distribution::ALL {
        let locator = Locator::new(d, &ids);
        for i in 0..500 {
            let k = format!("k{i}");
            assert_eq!(
                locator.locate_usable(k.as_bytes(), |_| true),
                locator.locate(k.as_bytes()),
                "{d}"
            );
            assert_eq!(locator.locate_usable(k.as_bytes(), |_| false), None, "{d}");
        }
        let none: [&str; 0] = [];
        assert_eq!(Locator::new(d, &none).locate_usable(b"k", |_| true), None);
    }
}

#[test]
fn keys_of_an_unusable_node_move_to_other_nodes_and_no_other_key_moves() {
    let ids = ["a:11211", "b:11212", "c:3", "d:4", "e:5"];
    for &d in Distribution::ALL {
        let locator = Locator::new(d, &ids);
        for down in 0..ids.len() {
            let mut moved = 0;
            for i in 0..1000 {
                let k = format!("k{i}");
                let owner = locator.locate(k.as_bytes()).unwrap();
                let now = locator.locate_usable(k.as_bytes(), |n| n != down).unwrap();
                if owner == down {
                    assert_ne!(now, down, "{d}");
                    moved += 1;
                } else {
                    assert_eq!(now, owner, "{d}");
                }
            }
            assert!(moved > 0, "{d}: node {down} owns no key");
        }
    }
}

#[test]
fn rendezvous_and_ring_fall_back_as_if_the_node_were_removed() {
    let ids = ["a:11211", "b:11212", "c:3", "d:4", "e:5"];
    let without_c = ["a:11211", "b:11212", "d:4", "e:5"];
    let to_full = |i: usize| if i >= 2 { i + 1 } else { i };
    for d in [Distribution::Ring, Distribution::Rendezvous] {
        let all = Locator::new(d, &ids);
        let removed = Locator::new(d, &without_c);
        for i in 0..1000 {
            let k = format!("k{i}");
            assert_eq!(
                all.locate_usable(k.as_bytes(), |n| n != 2),
                removed.locate(k.as_bytes()).map(to_full),
                "{d}"
            );
        }
    }
}

#[test]
fn modula_falls_back_to_the_following_indices_in_list_order() {
    let ids = ["x:1", "y:1", "z:1", "w:1", "v:1"];
    let l = Locator::new(Distribution::ModulaLibmemcached, &ids);
    for i in 0..200 {
        let k = format!("k{i}");
        let owner = l.locate(k.as_bytes()).unwrap();
        assert_eq!(
            l.locate_usable(k.as_bytes(), |n| n != owner),
            Some((owner + 1) % 5)
        );
        let only = (owner + 3) % 5;
        assert_eq!(l.locate_usable(k.as_bytes(), |n| n == only), Some(only));
    }
}

#[test]
fn moved_share_is_the_share_of_keys_that_move() {
    let ids: Vec<String> = (0..10).map(|i| format!("n{i}:11211")).collect();
    let same = |a: &Locator, b: &Locator| {
        let (a, b) = (a.clone(), b.clone());
        move |i: usize, j: usize| a.ids()[i] == b.ids()[j]
    };
    for &d in Distribution::ALL {
        let before = Locator::new(d, &ids[..9]);
        let after = before.next(&ids, None);
        let Some(share) = before.moved_share(&after, same(&before, &after)) else {
            assert!(matches!(
                d,
                Distribution::Rendezvous
                    | Distribution::ModulaLibmemcached
                    | Distribution::ModulaJava
            ));
            continue;
        };
        let keys = 20_000;
        let moved = (0..keys)
            .filter(|i| {
                let k = format!("key:{i}");
                let (x, y) = (before.locate(k.as_bytes()), after.locate(k.as_bytes()));
                before.ids()[x.unwrap()] != after.ids()[y.unwrap()]
            })
            .count();
        let sampled = moved as f64 / keys as f64;
        // A share of the hash space: keys follow it as far as their hash spreads them
        // (twemproxy's 32-bit FNV-1a and one-at-a-time spread these keys less evenly).
        let tolerance = match d {
            Distribution::KetamaFnv1a64 | Distribution::ConsistentLibmemcached => 0.04,
            _ => 0.015,
        };
        assert!(
            (share - sampled).abs() < tolerance,
            "{d}: {share} exact, {sampled} sampled"
        );
        assert!(share > 0.05 && share < 0.2, "{d}: {share}");
        assert_eq!(
            before.moved_share(&before, same(&before, &before)),
            Some(0.0)
        );
        assert_eq!(before.moved_share(&after, |_, _| false), Some(1.0));
    }
    let none: [&str; 0] = [];
    let empty = Locator::new(Distribution::Ring, &none);
    let full = Locator::new(Distribution::Ring, &ids);
    assert_eq!(empty.moved_share(&empty, |_, _| true), Some(0.0));
    assert_eq!(empty.moved_share(&full, |_, _| true), Some(1.0));
    assert_eq!(
        full.moved_share(&Locator::new(Distribution::Ketama, &ids), |_, _| true),
        None
    );
}

#[test]
fn moved_share_of_small_tables_by_hand() {
    // Space 0..100. a: [0, 10] and (90, 100) -> 0, (10, 50] -> 1, (50, 90] -> 2.
    // b: [0, 30] and (80, 100) -> 0, (30, 80] -> 1.
    let a: [u32; 3] = [10, 50, 90];
    let b: [u32; 2] = [30, 80];
    let share = moved_share_of(&a, &[0, 1, 2], &b, &[0, 1], 100, |x, y| x == y);
    // Differ on (10, 30] (1 vs 0), (50, 80] (2 vs 1), (80, 90] (2 vs 0): 20 + 30 + 10.
    assert!((share - 0.60).abs() < 1e-12, "{share}");
    let share = moved_share_of(&a, &[0, 1, 2], &b, &[0, 1], 100, |x, y| x + 1 == y);
    // If node x of a were node x + 1 of b, only a's 0 against b's 1 would be the same
    // node, and those ranges do not overlap: everything moved.
    assert!((share - 1.0).abs() < 1e-12, "{share}");
}

#[test]
fn identities() {
    let named = Node::new("mc-1.example", "10.1.2.3".parse().ok(), 11212);
    let bare = Node::new("mc-2.example", None, 11211);
    let literal = Node::new("10.9.9.9", "10.9.9.9".parse().ok(), 11211);
    let v6 = Node::new("2001:db8::5", "2001:db8::5".parse().ok(), 11211);
    assert_eq!(
        NodeIdentity::Hostname.placement_id(&named),
        "mc-1.example:11212"
    );
    assert_eq!(NodeIdentity::Ip.placement_id(&named), "10.1.2.3:11212");
    assert_eq!(
        NodeIdentity::HostnameAndIp.placement_id(&named),
        "mc-1.example/10.1.2.3:11212"
    );
    for identity in NodeIdentity::ALL {
        assert_eq!(identity.placement_id(&bare), "mc-2.example:11211");
        assert_eq!(identity.placement_id(&literal), "10.9.9.9:11211");
        assert_eq!(identity.placement_id(&v6), "2001:db8::5:11211");
    }
}
