//! The order in which the extensions' hooks and middleware run: ascending priority, then
//! extension name (names are unique), and for middleware then its id and the position the
//! extension declared it at. A total order that does not depend on the order the extensions
//! were loaded in; [`super::host::ExtensionHost`] computes it once, when it assembles.

use solobase_sdk::MiddlewareSpec;

/// Where a hook runs among the hooks at one point.
pub(crate) fn hook_rank(priority: i32, extension: &str) -> (i32, &str) {
    (priority, extension)
}

/// Where a middleware runs among all middleware. `declared` is its position in its
/// extension's list, so that even two middleware with one id and one priority never tie.
pub(crate) fn middleware_rank<'a>(
    priority: i32,
    extension: &'a str,
    id: &'a str,
    declared: usize,
) -> (i32, &'a str, &'a str, usize) {
    (priority, extension, id, declared)
}

/// The running order of the hooks at one point, from `(priority, extension name, extension
/// index)` of each extension hooked there: the extension indices, first to run first.
pub(crate) fn hook_order<'a>(
    hooked: impl IntoIterator<Item = (i32, &'a str, usize)>,
) -> Vec<usize> {
    let mut list: Vec<(i32, &str, usize)> = hooked.into_iter().collect();
    list.sort_by(|a, b| hook_rank(a.0, a.1).cmp(&hook_rank(b.0, b.1)));
    list.into_iter().map(|(_, _, i)| i).collect()
}

/// The running order of all middleware (on the way in; the way out is the reverse), from
/// `(extension index, extension name, its middleware)`: each as (extension index, its
/// position in the extension's list, spec).
pub(crate) fn middleware_order<'a>(
    extensions: impl IntoIterator<Item = (usize, &'a str, &'a [MiddlewareSpec])>,
) -> Vec<(usize, usize, MiddlewareSpec)> {
    let mut list: Vec<(usize, &str, usize, &MiddlewareSpec)> = extensions
        .into_iter()
        .flat_map(|(i, name, specs)| {
            specs
                .iter()
                .enumerate()
                .map(move |(declared, m)| (i, name, declared, m))
        })
        .collect();
    list.sort_by(|a, b| {
        middleware_rank(a.3.priority, a.1, &a.3.id, a.2).cmp(&middleware_rank(
            b.3.priority,
            b.1,
            &b.3.id,
            b.2,
        ))
    });
    list.into_iter()
        .map(|(i, _, declared, m)| (i, declared, m.clone()))
        .collect()
}

#[cfg(test)]
mod properties;
