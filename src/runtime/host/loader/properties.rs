//! Properties of the dependency order and of the rule that keeps an extension from loading
//! before its dependencies: on random graphs — DAGs, and graphs with cycles and missing
//! dependencies — every extension is ordered exactly once; every extension whose
//! dependencies can all load comes after them and loads; every other one (in a cycle, or
//! depending on a missing extension or on one that cannot load) comes after all loadable
//! ones, in name order, and is refused with the dependency it waits for.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::{dependency_order, unmet_dependency};

type Graph = BTreeMap<String, Vec<String>>;

/// Names that do not sort like their position, so that the order is not the name order.
fn name(i: usize) -> String {
    format!("{}{i}", ["m", "c", "x", "a"][i % 4])
}

/// A DAG: extension `i` depends only on extensions `< i`.
fn dag() -> impl Strategy<Value = Graph> {
    (1usize..10).prop_flat_map(|n| {
        prop::collection::vec(prop::collection::btree_set(0..n, 0..4), n).prop_map(|deps| {
            deps.into_iter()
                .enumerate()
                .map(|(i, d)| {
                    (
                        name(i),
                        d.into_iter().filter(|&j| j < i).map(name).collect(),
                    )
                })
                .collect()
        })
    })
}

/// Any graph: dependencies on any extension (itself included), and on missing ones.
fn any_graph() -> impl Strategy<Value = Graph> {
    (1usize..10).prop_flat_map(|n| {
        let dep = prop_oneof![4 => (0..n).prop_map(name), 1 => (0..3usize).prop_map(|k| format!("missing{k}"))];
        prop::collection::vec(prop::collection::vec(dep, 0..3), n).prop_map(|deps| {
            deps.into_iter()
                .enumerate()
                .map(|(i, mut d)| {
                    d.sort();
                    d.dedup();
                    (name(i), d)
                })
                .collect()
        })
    })
}

/// The extensions that can load, computed independently: the least set closed under "all
/// dependencies exist and can load".
fn loadable(graph: &Graph) -> BTreeSet<String> {
    let mut ok = BTreeSet::new();
    loop {
        let more: Vec<&String> = graph
            .iter()
            .filter(|(n, deps)| !ok.contains(*n) && deps.iter().all(|d| ok.contains(d)))
            .map(|(n, _)| n)
            .collect();
        if more.is_empty() {
            return ok;
        }
        ok.extend(more.into_iter().cloned());
    }
}

/// The host's loading loop (`ExtensionHost::start`), with nothing failing for other
/// reasons: in `order`, an extension is initialized unless `unmet_dependency` names a
/// dependency not initialized before it. Returns the initialized ones in order, and the
/// refusals.
fn load(graph: &Graph, order: &[String]) -> (Vec<String>, BTreeMap<String, String>) {
    let mut initialized: Vec<String> = Vec::new();
    let mut refused = BTreeMap::new();
    for name in order {
        let deps = graph[name].iter().map(String::as_str);
        match unmet_dependency(deps, |d| initialized.iter().any(|i| i == d)) {
            None => initialized.push(name.clone()),
            Some(reason) => {
                refused.insert(name.clone(), reason);
            }
        }
    }
    (initialized, refused)
}

fn check(graph: &Graph) -> Result<(), TestCaseError> {
    let order = dependency_order(graph);
    let position = |n: &str| order.iter().position(|o| o == n);

    let mut once = order.clone();
    once.sort();
    once.dedup();
    prop_assert_eq!(
        once.len(),
        order.len(),
        "an extension is ordered twice: {:?}",
        order
    );
    prop_assert_eq!(
        once,
        graph.keys().cloned().collect::<Vec<_>>(),
        "not every extension is ordered"
    );

    let ok = loadable(graph);
    let (first, rest) = order.split_at(ok.len());
    prop_assert_eq!(
        first.iter().cloned().collect::<BTreeSet<_>>(),
        ok.clone(),
        "the loadable extensions do not come first: {:?}",
        order
    );
    prop_assert!(
        rest.is_sorted(),
        "the others are not in name order: {:?}",
        rest
    );
    for name in first {
        for dep in &graph[name] {
            prop_assert!(
                position(dep) < position(name),
                "{} is ordered before its dependency {}: {:?}",
                name,
                dep,
                order
            );
        }
    }

    let (initialized, refused) = load(graph, &order);
    prop_assert_eq!(
        initialized.iter().cloned().collect::<BTreeSet<_>>(),
        ok,
        "what loads is not exactly what can"
    );
    for (name, reason) in &refused {
        let waits_for = graph[name]
            .iter()
            .find(|d| !initialized.contains(d))
            .expect("a refused extension has a dependency that did not load");
        prop_assert_eq!(
            reason,
            &format!("its dependency {waits_for} is not running")
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn a_dag_loads_entirely_each_after_its_dependencies(graph in dag()) {
        prop_assert_eq!(loadable(&graph).len(), graph.len());
        check(&graph)?;
    }

    #[test]
    fn cycles_and_missing_dependencies_never_load_and_come_last(graph in any_graph()) {
        check(&graph)?;
    }
}

#[test]
fn a_cycle_and_what_depends_on_it_are_refused() {
    let graph: Graph = [
        ("a", vec!["b"]),
        ("b", vec!["a"]),
        ("c", vec![]),
        ("d", vec!["c", "a"]),
        ("e", vec!["nowhere"]),
    ]
    .into_iter()
    .map(|(n, d)| (n.to_owned(), d.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(dependency_order(&graph), ["c", "a", "b", "d", "e"]);
    let (initialized, refused) = load(&graph, &dependency_order(&graph));
    assert_eq!(initialized, ["c"]);
    assert_eq!(refused["d"], "its dependency a is not running");
    assert_eq!(refused["e"], "its dependency nowhere is not running");
}
