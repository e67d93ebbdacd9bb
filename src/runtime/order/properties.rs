//! Properties of the hook and middleware order: a total order (no two distinct entries
//! rank equal; antisymmetric; transitive), independent of the order extensions were loaded
//! in, and ascending in priority.

use std::cmp::Ordering;

use proptest::prelude::*;
use solobase_sdk::MiddlewareSpec;

use super::{hook_order, hook_rank, middleware_order, middleware_rank};

/// One generated extension: its (unique) name, its hook priority at one point (if hooked
/// there), and its middleware as declared.
#[derive(Debug, Clone)]
struct Ext {
    name: String,
    hook: Option<i32>,
    middleware: Vec<MiddlewareSpec>,
}

/// Up to eight extensions with unique names that are often prefixes of each other, few
/// priorities (ties are common) and middleware ids that repeat within an extension.
fn extensions() -> impl Strategy<Value = Vec<Ext>> {
    prop::collection::btree_set("[a-c]{1,3}", 0..8).prop_flat_map(|names| {
        let n = names.len();
        let names: Vec<String> = names.into_iter().collect();
        let one = (
            prop::option::of(-2i32..=2),
            prop::collection::vec(("[xy]", -2i32..=2), 0..4),
        );
        prop::collection::vec(one, n).prop_map(move |parts| {
            names
                .iter()
                .zip(parts)
                .map(|(name, (hook, mw))| Ext {
                    name: name.clone(),
                    hook,
                    // The path (not part of the order) tells apart middleware declared
                    // twice with one id and priority.
                    middleware: mw
                        .into_iter()
                        .enumerate()
                        .map(|(k, (id, prio))| {
                            MiddlewareSpec::new(&id, prio).path(&format!("/{k}"))
                        })
                        .collect(),
                })
                .collect()
        })
    })
}

/// The extensions, and the same extensions in another load order.
fn two_load_orders() -> impl Strategy<Value = (Vec<Ext>, Vec<Ext>)> {
    extensions().prop_flat_map(|exts| (Just(exts.clone()), Just(exts).prop_shuffle()))
}

/// The hook order as extension names.
fn hooks(exts: &[Ext]) -> Vec<String> {
    let order = hook_order(
        exts.iter()
            .enumerate()
            .filter_map(|(i, e)| e.hook.map(|p| (p, e.name.as_str(), i))),
    );
    order.into_iter().map(|i| exts[i].name.clone()).collect()
}

/// The middleware order as (extension name, declared position, priority).
fn middleware(exts: &[Ext]) -> Vec<(String, usize, i32)> {
    let order = middleware_order(
        exts.iter()
            .enumerate()
            .map(|(i, e)| (i, e.name.as_str(), e.middleware.as_slice())),
    );
    order
        .into_iter()
        .map(|(i, declared, spec)| {
            let e = &exts[i];
            assert_eq!(e.middleware[declared], spec, "the position names the spec");
            (e.name.clone(), declared, spec.priority)
        })
        .collect()
}

/// Checks that `cmp` is a total order on `items` (as used by `sort_by`): distinct items
/// never compare equal, `cmp(a, b)` is the reverse of `cmp(b, a)`, and it is transitive.
fn assert_total<T: std::fmt::Debug>(items: &[T], cmp: impl Fn(&T, &T) -> Ordering) {
    for (i, a) in items.iter().enumerate() {
        for (j, b) in items.iter().enumerate() {
            let ab = cmp(a, b);
            assert_eq!(ab == Ordering::Equal, i == j, "{a:?} and {b:?} tie");
            assert_eq!(ab, cmp(b, a).reverse(), "not antisymmetric: {a:?}, {b:?}");
            for c in items {
                if ab == Ordering::Less && cmp(b, c) == Ordering::Less {
                    assert_eq!(
                        cmp(a, c),
                        Ordering::Less,
                        "not transitive: {a:?} {b:?} {c:?}"
                    );
                }
            }
        }
    }
}

proptest! {
    #[test]
    fn hook_order_is_total_stable_and_by_priority((exts, shuffled) in two_load_orders()) {
        let hooked: Vec<(i32, &str)> = exts
            .iter()
            .filter_map(|e| e.hook.map(|p| (p, e.name.as_str())))
            .collect();
        assert_total(&hooked, |a, b| hook_rank(a.0, a.1).cmp(&hook_rank(b.0, b.1)));

        let order = hooks(&exts);
        prop_assert_eq!(order.len(), hooked.len(), "every hooked extension runs once");
        prop_assert_eq!(&order, &hooks(&shuffled), "the load order changed the hook order");
        let prio = |name: &String| {
            exts.iter().find(|e| &e.name == name).and_then(|e| e.hook).expect("hooked")
        };
        for pair in order.windows(2) {
            let (a, b) = ((prio(&pair[0]), &pair[0]), (prio(&pair[1]), &pair[1]));
            prop_assert!(a < b, "{:?} runs before {:?}", a, b);
        }
    }

    #[test]
    fn middleware_order_is_total_stable_and_by_priority((exts, shuffled) in two_load_orders()) {
        let declared: Vec<(i32, &str, &str, usize)> = exts
            .iter()
            .flat_map(|e| {
                e.middleware
                    .iter()
                    .enumerate()
                    .map(|(k, m)| (m.priority, e.name.as_str(), m.id.as_str(), k))
            })
            .collect();
        assert_total(&declared, |a, b| {
            middleware_rank(a.0, a.1, a.2, a.3).cmp(&middleware_rank(b.0, b.1, b.2, b.3))
        });

        let order = middleware(&exts);
        prop_assert_eq!(order.len(), declared.len(), "every middleware runs once");
        prop_assert_eq!(&order, &middleware(&shuffled), "the load order changed the middleware order");
        for pair in order.windows(2) {
            let ((a_name, a_decl, a_prio), (b_name, b_decl, b_prio)) = (&pair[0], &pair[1]);
            prop_assert!(a_prio <= b_prio, "priority {} runs before {}", a_prio, b_prio);
            if a_prio == b_prio {
                prop_assert!(a_name <= b_name, "{} runs before {} at one priority", a_name, b_name);
            }
            if a_name == b_name && a_prio == b_prio {
                let ext = exts.iter().find(|e| &e.name == a_name).expect("declared");
                let (a_id, b_id) = (&ext.middleware[*a_decl].id, &ext.middleware[*b_decl].id);
                prop_assert!(
                    (a_id, a_decl) < (b_id, b_decl),
                    "{}'s middleware {} ({}) runs before {} ({})", a_name, a_id, a_decl, b_id, b_decl
                );
            }
        }
    }
}
