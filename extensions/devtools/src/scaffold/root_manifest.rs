//! Adds an extension to the project's `Cargo.toml` by editing its text: the Cargo feature
//! `<name> = ["dep:solobase-ext-<name>"]`, the optional path dependency and the workspace
//! member. Comments, order and formatting are kept (no TOML round trip). The result is parsed
//! again and must equal the original plus exactly those three entries; a file that does not
//! have the expected shape is refused with the lines to add by hand. [`remove_extension`]
//! takes the same three entries out again (for `solobase extensions uninstall`), checked the
//! same way.

/// The comment that heads generated features at the end of `[features]`.
const MARKER: &str = "# Extensions added by `solobase extensions generate` or `install`.";
/// The marker's earlier wording, still recognised.
const OLD_MARKER: &str =
    "# Custom extensions (extensions/custom/), added by `solobase extensions generate`.";

/// `text` with extension `name` (folder `dir`, relative to the root) added.
pub fn add_extension(text: &str, name: &str, dir: &str) -> Result<String, String> {
    let package = format!("solobase-ext-{name}");
    let feature = format!("{name} = [\"dep:{package}\"]");
    let dependency = format!("{package} = {{ path = \"{dir}\", optional = true }}");
    let by_hand = || {
        format!(
            "add by hand: \"{dir}\" to [workspace] members, `{feature}` to [features] and \
             `{dependency}` to [dependencies]"
        )
    };
    text.parse::<toml::Table>()
        .map_err(|e| format!("it is not valid TOML ({e}); {}", by_hand()))?;
    let edited = edit(text, dir, &feature, &dependency)
        .map_err(|e| format!("{e}, so it was not changed; {}", by_hand()))?;
    check(text, &edited, name, dir).map_err(|e| {
        format!(
            "editing it went wrong ({e}), so it was not changed; {}",
            by_hand()
        )
    })?;
    Ok(edited)
}

/// `text` without extension `name` (folder `dir`): its feature, optional dependency and
/// workspace member. Refused when another feature still names it.
pub fn remove_extension(text: &str, name: &str, dir: &str) -> Result<String, String> {
    let package = format!("solobase-ext-{name}");
    let by_hand = || {
        format!(
            "remove by hand: \"{dir}\" from [workspace] members, the feature {name} from \
             [features] and {package} from [dependencies]"
        )
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("it is not valid TOML ({e}); {}", by_hand()))?;
    if let Some(features) = table.get("features").and_then(|f| f.as_table()) {
        for (feature, list) in features {
            let names_it = list.as_array().is_some_and(|items| {
                items.iter().filter_map(|i| i.as_str()).any(|i| {
                    i == name || i.starts_with(&format!("{name}/")) || i.contains(&package)
                })
            });
            if feature != name && names_it {
                return Err(format!(
                    "the feature {feature} turns it on: take {name} out of it first, then \
                     uninstall"
                ));
            }
        }
    }
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let feature = format!("{name} = [\"dep:{package}\"]");
    let features = section(&lines, "features")?;
    let dependencies = section(&lines, "dependencies")?;
    let workspace = section(&lines, "workspace")?;
    let member = format!("\"{dir}\"");
    let mut remove = Vec::new();
    remove.extend(features.clone().filter(|&i| lines[i].trim() == feature));
    remove.extend(
        dependencies
            .clone()
            .filter(|&i| lines[i].trim_start().starts_with(&format!("{package} ="))),
    );
    let mut inline = None;
    for i in workspace {
        let l = lines[i].trim();
        if l == format!("{member},") || l == member {
            remove.push(i);
        } else if l.starts_with("members") && l.contains(&member) {
            inline = Some(i);
        }
    }
    if let Some(i) = inline {
        lines[i] = lines[i]
            .replace(&format!(", {member}"), "")
            .replace(&format!("{member}, "), "")
            .replace(&member, "");
    }
    remove.sort_unstable();
    for i in remove.into_iter().rev() {
        lines.remove(i);
    }
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = lines.join(newline);
    if text.ends_with('\n') {
        out.push_str(newline);
    }
    check(&out, text, name, dir).map_err(|e| {
        format!(
            "it does not have the entries `solobase extensions install` adds ({e}), so it was \
             not changed; {}",
            by_hand()
        )
    })?;
    Ok(out)
}

fn edit(text: &str, dir: &str, feature: &str, dependency: &str) -> Result<String, String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // Edit from the bottom up, so that earlier line numbers stay valid.
    let mut edits = [
        ("features", section(&lines, "features")?),
        ("dependencies", section(&lines, "dependencies")?),
        ("workspace", section(&lines, "workspace")?),
    ];
    edits.sort_by_key(|(_, range)| std::cmp::Reverse(range.start));
    for (name, range) in edits {
        match name {
            "features" => add_feature(&mut lines, range, feature),
            "dependencies" => add_dependency(&mut lines, range, dependency),
            _ => add_member(&mut lines, range, dir)?,
        }
    }
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = lines.join(newline);
    if text.ends_with('\n') {
        out.push_str(newline);
    }
    Ok(out)
}

/// The lines of `[name]`: from its header to the next header.
fn section(lines: &[String], name: &str) -> Result<std::ops::Range<usize>, String> {
    let header = |l: &str| {
        let l = l.trim();
        (l.starts_with('[') && !l.starts_with("[["))
            .then(|| l[1..].split(']').next().map(str::trim))
            .flatten()
            .map(str::to_owned)
    };
    let start = lines
        .iter()
        .position(|l| header(l).as_deref() == Some(name))
        .ok_or_else(|| format!("it has no [{name}] section"))?;
    let end = lines[start + 1..]
        .iter()
        .position(|l| header(l).is_some())
        .map_or(lines.len(), |i| start + 1 + i);
    Ok(start..end)
}

/// The line after the section's last entry (comments and blank lines before the next header
/// belong to that header).
fn after_last_entry(lines: &[String], range: &std::ops::Range<usize>) -> usize {
    let mut end = range.end;
    while end > range.start + 1 {
        let l = lines[end - 1].trim();
        if l.is_empty() || l.starts_with('#') {
            end -= 1;
        } else {
            break;
        }
    }
    end
}

fn add_feature(lines: &mut Vec<String>, range: std::ops::Range<usize>, feature: &str) {
    let at = after_last_entry(lines, &range);
    if lines[range.clone()]
        .iter()
        .any(|l| l.trim() == MARKER || l.trim() == OLD_MARKER)
    {
        lines.insert(at, feature.to_owned());
    } else {
        lines.splice(
            at..at,
            [String::new(), MARKER.to_owned(), feature.to_owned()],
        );
    }
}

fn add_dependency(lines: &mut Vec<String>, range: std::ops::Range<usize>, dependency: &str) {
    let last_extension = lines[range.clone()]
        .iter()
        .rposition(|l| l.trim_start().starts_with("solobase-ext-"))
        .map(|i| range.start + i + 1);
    let at = last_extension.unwrap_or_else(|| after_last_entry(lines, &range));
    lines.insert(at, dependency.to_owned());
}

fn add_member(
    lines: &mut Vec<String>,
    range: std::ops::Range<usize>,
    dir: &str,
) -> Result<(), String> {
    let start = lines[range.clone()]
        .iter()
        .position(|l| {
            l.trim_start()
                .strip_prefix("members")
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| range.start + i)
        .ok_or("its [workspace] has no `members = [...]`")?;
    let entry = format!("\"{dir}\"");
    let first = &lines[start];
    if let Some(close) = first.rfind(']') {
        // One line: members = [".", "a"]
        let inside = first[..close].trim_end();
        let open = inside.find('[').ok_or("its `members` is not an array")?;
        let sep = if inside.ends_with('[') || inside.ends_with(',') {
            if inside.len() == open + 1 { "" } else { " " }
        } else {
            ", "
        };
        lines[start] = format!("{inside}{sep}{entry}{}", &first[close..]);
        return Ok(());
    }
    let close = lines[start + 1..range.end]
        .iter()
        .position(|l| l.trim_start().starts_with(']'))
        .map(|i| start + 1 + i)
        .ok_or("its [workspace] members array does not end with a line starting with `]`")?;
    let previous = lines[start + 1..close]
        .iter()
        .rposition(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|i| start + 1 + i);
    let indent = previous.map_or("    ".to_owned(), |i| {
        lines[i][..lines[i].len() - lines[i].trim_start().len()].to_owned()
    });
    if let Some(i) = previous {
        let item = lines[i].trim_end();
        if item.contains('#') {
            return Err("the last workspace member has a comment on its line".into());
        }
        if !item.ends_with(',') {
            lines[i] = format!("{item},");
        }
    }
    lines.insert(close, format!("{indent}{entry},"));
    Ok(())
}

/// The edited file parses, and is the original plus exactly the three entries.
fn check(original: &str, edited: &str, name: &str, dir: &str) -> Result<(), String> {
    let before: toml::Table = original.parse().map_err(|e| format!("the original: {e}"))?;
    let mut after: toml::Table = edited.parse().map_err(|e| format!("the result: {e}"))?;
    let package = format!("solobase-ext-{name}");
    let feature = after
        .get_mut("features")
        .and_then(|f| f.as_table_mut())
        .and_then(|f| f.remove(name));
    if feature != Some(toml::Value::Array(vec![format!("dep:{package}").into()])) {
        return Err(format!("the feature {name} is not as expected"));
    }
    let dependency = after
        .get_mut("dependencies")
        .and_then(|d| d.as_table_mut())
        .and_then(|d| d.remove(&package));
    let expected: toml::Value =
        toml::from_str::<toml::Table>(&format!("d = {{ path = \"{dir}\", optional = true }}"))
            .map_err(|e| e.to_string())?
            .remove("d")
            .unwrap_or(toml::Value::Boolean(false));
    if dependency.as_ref() != Some(&expected) {
        return Err(format!("the dependency {package} is not as expected"));
    }
    let members = after
        .get_mut("workspace")
        .and_then(|w| w.get_mut("members"))
        .and_then(|m| m.as_array_mut())
        .ok_or("the workspace members are gone")?;
    let count = members.len();
    members.retain(|m| m.as_str() != Some(dir));
    if members.len() + 1 != count {
        return Err(format!("the workspace member {dir} is not as expected"));
    }
    if after != before {
        return Err("something else changed".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = r#"[workspace]
members = [
    ".",
    "extensions/core",
    "bench", # the benchmark
]

[features]
default = ["all-extensions"]
all-extensions = [
    "webhooks",
]
webhooks = ["dep:solobase-ext-webhooks"]
# Test-only extensions.
probe = ["dep:solobase-ext-probe"]

[dependencies]
solobase-sdk.workspace = true
solobase-ext-webhooks = { path = "extensions/official/webhooks", optional = true }
anyhow.workspace = true

# Comment of the next section.
[profile.dev]
debug = 1
"#;

    #[test]
    fn adds_the_three_entries_and_keeps_everything_else() {
        let root = ROOT.replace("\"bench\", # the benchmark", "\"bench\",");
        let out = add_extension(&root, "hello", "extensions/custom/hello").unwrap();
        let expected = root
            .replace(
                "    \"bench\",\n",
                "    \"bench\",\n    \"extensions/custom/hello\",\n",
            )
            .replace(
                "probe = [\"dep:solobase-ext-probe\"]\n",
                &format!(
                    "probe = [\"dep:solobase-ext-probe\"]\n\n{MARKER}\nhello = \
                     [\"dep:solobase-ext-hello\"]\n"
                ),
            )
            .replace(
                "optional = true }\nanyhow",
                "optional = true }\nsolobase-ext-hello = { path = \"extensions/custom/hello\", \
                 optional = true }\nanyhow",
            );
        assert_eq!(out, expected);
        // A second one joins the first under the marker.
        let again = add_extension(&out, "notes", "extensions/custom/notes").unwrap();
        assert_eq!(again.matches(MARKER).count(), 1);
        assert!(
            again.contains(
                "hello = [\"dep:solobase-ext-hello\"]\nnotes = [\"dep:solobase-ext-notes\"]\n"
            ),
            "{again}"
        );
        assert!(
            again.contains("    \"extensions/custom/hello\",\n    \"extensions/custom/notes\",\n")
        );
    }

    #[test]
    fn one_line_members_arrays() {
        for (members, want) in [
            ("members = [\".\"]", "members = [\".\", \"x/a\"]"),
            ("members = []", "members = [\"x/a\"]"),
            ("members = [\".\",]", "members = [\".\", \"x/a\"]"),
        ] {
            let text = format!("[workspace]\n{members}\n[features]\n[dependencies]\n");
            let out = add_extension(&text, "a", "x/a").unwrap();
            assert!(out.contains(want), "{out}");
        }
    }

    #[test]
    fn keeps_windows_line_endings() {
        let text =
            "[workspace]\r\nmembers = [\r\n    \".\",\r\n]\r\n[features]\r\n[dependencies]\r\n";
        let out = add_extension(text, "a", "x/a").unwrap();
        assert_eq!(
            out.matches("\r\n").count(),
            out.matches('\n').count(),
            "{out:?}"
        );
        assert!(out.contains("    \"x/a\",\r\n]"), "{out:?}");
    }

    #[test]
    fn a_member_without_trailing_comma_gets_one() {
        let text = "[workspace]\nmembers = [\n    \".\"\n]\n[features]\n[dependencies]\n";
        let out = add_extension(text, "a", "x/a").unwrap();
        assert!(out.contains("    \".\",\n    \"x/a\",\n]"), "{out}");
    }

    #[test]
    fn removing_undoes_adding() {
        let root = ROOT.replace("\"bench\", # the benchmark", "\"bench\",");
        let added = add_extension(&root, "hello", "extensions/community/hello").unwrap();
        let both = add_extension(&added, "notes", "extensions/custom/notes").unwrap();
        let removed = remove_extension(&both, "notes", "extensions/custom/notes").unwrap();
        assert_eq!(removed, added);
        let one_line = "[workspace]\nmembers = [\".\"]\n[features]\n[dependencies]\n";
        let added = add_extension(one_line, "a", "x/a").unwrap();
        let removed = remove_extension(&added, "a", "x/a").unwrap();
        assert!(removed.contains("members = [\".\"]"), "{removed}");
        // Not installed, or still named by another feature: refused.
        assert!(remove_extension(&root, "hello", "extensions/community/hello").is_err());
        let grouped = add_extension(&root, "hello", "extensions/community/hello")
            .unwrap()
            .replace(
                "    \"webhooks\",\n]",
                "    \"webhooks\",\n    \"hello\",\n]",
            );
        let err = remove_extension(&grouped, "hello", "extensions/community/hello").unwrap_err();
        assert!(err.contains("all-extensions"), "{err}");
    }

    #[test]
    fn refuses_unexpected_shapes_with_what_to_add_by_hand() {
        for (text, reason) in [
            (ROOT.replace("[features]", "[feature]"), "no [features]"),
            (ROOT.replace("members = [", "exclude = ["), "no `members"),
            (ROOT.to_owned(), "comment on its line"),
            (ROOT.replace("debug = 1", "debug = ["), "not valid TOML"),
        ] {
            let err = add_extension(&text, "hello", "extensions/custom/hello").unwrap_err();
            assert!(err.contains(reason), "{err}");
            assert!(
                err.contains("add by hand") && err.contains("optional = true"),
                "{err}"
            );
        }
    }
}
