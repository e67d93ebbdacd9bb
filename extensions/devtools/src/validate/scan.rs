//! A source scan for `solobase extensions validate`: finds where an extension's Rust code
//! reaches past the SDK — `std::fs`, `std::net`, `std::process` (also as `::std::…`, inside
//! `use std::{…}` groups at any depth, and under `std::os::<platform>::…`), their async twins
//! `tokio::fs`, `tokio::net`, `tokio::process`, HTTP and socket client crates, the SDK's own
//! outbound HTTP (`solobase_sdk::outbound`, `ctx.http.…`), and `unsafe` — with the line of each.
//!
//! It is a small lexer, not a parser: comments (nested block comments too), string, raw
//! string, byte string and character literals are skipped, so a path mentioned in a comment or
//! a message is not reported; lifetimes are not mistaken for character literals. It does not
//! follow renames (`use std as s;`) or macros that build paths: it is a review aid that
//! catches the ordinary forms, and the permissions it names are what operators review.

/// What a use reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// `std::fs`: the file system, outside the extension's storage directory.
    Fs,
    /// `std::net`: sockets and addresses.
    Net,
    /// `std::process`: other programs, and exiting the server.
    Process,
    /// `unsafe`: code the compiler does not check.
    Unsafe,
    /// `tokio::spawn`, `tokio::task::spawn*`, `std::thread::spawn`: work the host does not
    /// own (it belongs in `ctx.tasks`).
    Spawn,
}

impl Reach {
    fn from_module(segment: &str) -> Option<Self> {
        match segment {
            "fs" => Some(Self::Fs),
            "net" => Some(Self::Net),
            "process" => Some(Self::Process),
            _ => None,
        }
    }
}

/// One use found: what it reaches, the path as written up to the module that decides it
/// (`std::fs`, `std::os::unix::net`, `tokio::process`, `unsafe`), and its line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub reach: Reach,
    pub path: String,
    pub line: usize,
}

/// Crates whose `fs`, `net` and `process` modules (and spawning functions) are reported.
const ROOTS: [&str; 2] = ["std", "tokio"];

/// HTTP and socket client crates: any use of one reaches the network.
pub const NET_CRATES: [&str; 11] = [
    "reqwest",
    "hyper",
    "hyper_util",
    "ureq",
    "isahc",
    "surf",
    "attohttpc",
    "awc",
    "curl",
    "socket2",
    "mio",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    /// Any other punctuation character.
    Punct(char),
}

/// Every use of `std::fs`, `std::net`, `std::process` (and tokio's), and `unsafe` in `source`,
/// in order.
/// Code under exactly `#[cfg(test)]` is not scanned: it is never part of the server. (Any
/// other condition, such as `cfg(any(test, …))`, is scanned.)
pub fn scan(source: &str) -> Vec<Finding> {
    let tokens = lex(source);
    let (skipped, _) = test_only(&tokens);
    let mut findings = Vec::new();
    for (i, (tok, line)) in tokens.iter().enumerate() {
        if skipped.iter().any(|r| r.contains(&i)) {
            continue;
        }
        match tok {
            Tok::Ident(word) if word == "unsafe" => findings.push(Finding {
                reach: Reach::Unsafe,
                path: word.clone(),
                line: *line,
            }),
            Tok::Ident(word)
                if NET_CRATES.contains(&word.as_str())
                    && is_crate_root(&tokens, i)
                    && matches!(
                        tokens.get(i + 1),
                        Some((Tok::PathSep | Tok::Punct(';' | ','), _))
                    ) =>
            {
                findings.push(Finding {
                    reach: Reach::Net,
                    path: word.clone(),
                    line: *line,
                });
            }
            // The SDK's outbound HTTP: `solobase_sdk::outbound…`, or `….http.send(…)`.
            Tok::Ident(word)
                if (word == "solobase_sdk"
                    && is_crate_root(&tokens, i)
                    && matches!(tokens.get(i + 1), Some((Tok::PathSep, _)))
                    && matches!(tokens.get(i + 2), Some((Tok::Ident(w), _)) if w == "outbound"))
                    || (word == "http"
                        && i > 0
                        && tokens[i - 1].0 == Tok::Punct('.')
                        && matches!(tokens.get(i + 1), Some((Tok::Punct('.'), _)))
                        && matches!(tokens.get(i + 2), Some((Tok::Ident(w), _))
                            if w == "send" || w == "check")) =>
            {
                let path = match word.as_str() {
                    "http" => "ctx.http",
                    _ => "solobase_sdk::outbound",
                };
                findings.push(Finding {
                    reach: Reach::Net,
                    path: path.into(),
                    line: *line,
                });
            }
            Tok::Ident(word) if ROOTS.contains(&word.as_str()) && is_crate_root(&tokens, i) => {
                if let Some((Tok::PathSep, _)) = tokens.get(i + 1) {
                    let mut prefix = vec![word.clone()];
                    walk_path(&tokens, i + 2, &mut prefix, &mut findings);
                }
            }
            _ => {}
        }
    }
    findings
}

/// Whether the crate name at `i` starts a path (`std::…`, `::std::…`) rather than continuing
/// one (`other::std::…`).
fn is_crate_root(tokens: &[(Tok, usize)], i: usize) -> bool {
    const PATH_KEYWORDS: [&str; 4] = ["crate", "self", "super", "Self"];
    if i == 0 || tokens[i - 1].0 != Tok::PathSep {
        return true;
    }
    match i.checked_sub(2).map(|j| &tokens[j].0) {
        Some(Tok::Ident(word)) => !PATH_KEYWORDS.contains(&word.as_str()) && is_keyword(word),
        Some(Tok::Punct('>')) => false,
        _ => true,
    }
}

/// Keywords that may stand before a leading `::` (`use ::std::fs`, `return ::std::…`).
fn is_keyword(word: &str) -> bool {
    matches!(
        word,
        "use"
            | "pub"
            | "return"
            | "let"
            | "in"
            | "as"
            | "mut"
            | "ref"
            | "move"
            | "else"
            | "if"
            | "match"
            | "while"
            | "for"
            | "break"
            | "yield"
            | "impl"
            | "dyn"
            | "where"
            | "const"
            | "static"
            | "type"
    )
}

/// Reads the path segments after `std::` (or `tokio::`) starting at `i`, into `prefix` (which
/// starts with the crate's name); a `{…}` group
/// continues the prefix with each of its items. Reports the first segment that makes the
/// path reach something.
fn walk_path(
    tokens: &[(Tok, usize)],
    mut i: usize,
    prefix: &mut Vec<String>,
    findings: &mut Vec<Finding>,
) -> usize {
    let depth = prefix.len();
    loop {
        match tokens.get(i) {
            Some((Tok::Ident(segment), line)) => {
                prefix.push(segment.clone());
                if let Some(reach) = reaches(prefix)
                    && prefix.len() == reach_depth(prefix)
                {
                    findings.push(Finding {
                        reach,
                        path: prefix.join("::"),
                        line: *line,
                    });
                }
                i += 1;
            }
            Some((Tok::Punct('{'), _)) => {
                i = walk_group(tokens, i + 1, prefix, findings);
                break;
            }
            _ => break,
        }
        match tokens.get(i) {
            Some((Tok::PathSep, _)) => i += 1,
            _ => break,
        }
    }
    prefix.truncate(depth);
    i
}

/// The items of a `{…}` group starting at `i` (just after `{`); returns the index after `}`.
fn walk_group(
    tokens: &[(Tok, usize)],
    mut i: usize,
    prefix: &mut Vec<String>,
    findings: &mut Vec<Finding>,
) -> usize {
    loop {
        i = walk_path(tokens, i, prefix, findings);
        // Skip the rest of the item (`as name`, `*`, `self`) up to `,` or `}`.
        let mut nested = 0usize;
        loop {
            match tokens.get(i) {
                None => return i,
                Some((Tok::Punct('{'), _)) => nested += 1,
                Some((Tok::Punct('}'), _)) if nested == 0 => return i + 1,
                Some((Tok::Punct('}'), _)) => nested -= 1,
                Some((Tok::Punct(','), _)) if nested == 0 => {
                    i += 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// What a path (crate name first) reaches: `<crate>::fs`, `::net`, `::process`, or
/// `std::os::<platform>::<one of them>` (`std::os::unix::net` is sockets too).
fn reaches(path: &[String]) -> Option<Reach> {
    const SPAWNS: [&str; 3] = ["spawn", "spawn_blocking", "spawn_local"];
    match path {
        [tokio, spawn] if tokio == "tokio" && SPAWNS.contains(&spawn.as_str()) => {
            Some(Reach::Spawn)
        }
        [tokio, task, spawn]
            if tokio == "tokio" && task == "task" && SPAWNS.contains(&spawn.as_str()) =>
        {
            Some(Reach::Spawn)
        }
        [std, thread, spawn]
            if std == "std" && thread == "thread" && (spawn == "spawn" || spawn == "Builder") =>
        {
            Some(Reach::Spawn)
        }
        [_, first, ..] if Reach::from_module(first).is_some() => Reach::from_module(first),
        [std, os, _, module, ..] if std == "std" && os == "os" => Reach::from_module(module),
        _ => None,
    }
}

/// How many segments decide [`reaches`]: reported once, when the path gets that long.
fn reach_depth(path: &[String]) -> usize {
    match path.get(1).map(String::as_str) {
        Some("os") => 4,
        Some("task" | "thread") => 3,
        _ => 2,
    }
}

/// Identifiers, `::` and punctuation with their lines; comments and literals dropped.
/// The modules `source` declares as test-only files (`#[cfg(test)] mod name;`), whose files
/// are not scanned either.
pub fn test_modules(source: &str) -> Vec<String> {
    test_only(&lex(source)).1
}

/// The token ranges of items under exactly `#[cfg(test)]`, and the names of the test-only
/// modules in files of their own.
fn test_only(tokens: &[(Tok, usize)]) -> (Vec<std::ops::Range<usize>>, Vec<String>) {
    let is = |i: usize, t: &Tok| tokens.get(i).is_some_and(|(x, _)| x == t);
    let ident = |i: usize, w: &str| matches!(tokens.get(i), Some((Tok::Ident(x), _)) if x == w);
    let mut ranges = Vec::new();
    let mut modules = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let attribute = is(i, &Tok::Punct('#'))
            && is(i + 1, &Tok::Punct('['))
            && ident(i + 2, "cfg")
            && is(i + 3, &Tok::Punct('('))
            && ident(i + 4, "test")
            && is(i + 5, &Tok::Punct(')'))
            && is(i + 6, &Tok::Punct(']'));
        if !attribute {
            i += 1;
            continue;
        }
        let start = i;
        let mut j = i + 7;
        // Further attributes of the same item.
        while is(j, &Tok::Punct('#')) && is(j + 1, &Tok::Punct('[')) {
            let mut depth = 0usize;
            j += 1;
            while j < tokens.len() {
                match tokens[j].0 {
                    Tok::Punct('[') => depth += 1,
                    Tok::Punct(']') => {
                        depth -= 1;
                        if depth == 0 {
                            j += 1;
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        if ident(j, "mod")
            && let Some((Tok::Ident(name), _)) = tokens.get(j + 1)
            && is(j + 2, &Tok::Punct(';'))
        {
            modules.push(name.clone());
        }
        // The item ends at its first `;` outside braces, or with its outermost `}`.
        let mut depth = 0usize;
        while j < tokens.len() {
            match tokens[j].0 {
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                Tok::Punct(';') if depth == 0 => break,
                _ => {}
            }
            j += 1;
        }
        ranges.push(start..j + 1);
        i = j + 1;
    }
    (ranges, modules)
}

fn lex(source: &str) -> Vec<(Tok, usize)> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Advances over `chars[from..to]`, counting newlines.
    let count = |from: usize, to: usize, line: &mut usize| {
        *line += chars[from..to.min(chars.len())]
            .iter()
            .filter(|c| **c == '\n')
            .count();
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let start = i;
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i = skip_block_comment(&chars, i);
        } else if c == '"' {
            i = skip_string(&chars, i + 1);
        } else if let Some(end) = raw_or_prefixed_literal(&chars, i) {
            i = end;
        } else if c == '\'' {
            i = skip_char_or_lifetime(&chars, i);
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            tokens.push((Tok::Ident(word), line));
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c == ':' && next == Some(':') {
            tokens.push((Tok::PathSep, line));
            i += 2;
        } else {
            if !c.is_whitespace() {
                tokens.push((Tok::Punct(c), line));
            }
            i += 1;
        }
        count(start, i, &mut line);
    }
    tokens
}

/// From `/*` at `i`: the index after the matching `*/` (block comments nest in Rust).
fn skip_block_comment(chars: &[char], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < chars.len() {
        if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
            depth += 1;
            i += 2;
        } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// From just after an opening `"`: the index after the closing one (escapes honoured).
fn skip_string(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// A raw string (`r"…"`, `r#"…"#`), or a byte/C string or byte literal (`b"…"`, `br#"…"#`,
/// `c"…"`, `b'x'`) starting at `i`: the index after it. `None` when none starts there (also
/// for an identifier that merely starts with `r`, `b` or `c`, and for raw identifiers).
fn raw_or_prefixed_literal(chars: &[char], i: usize) -> Option<usize> {
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    let prefixed = matches!(chars.get(j), Some('b' | 'c'));
    if prefixed {
        j += 1;
    }
    if chars.get(j) == Some(&'\'') && chars[i] == 'b' && j == i + 1 {
        return Some(skip_char_or_lifetime(chars, j));
    }
    let raw = chars.get(j) == Some(&'r');
    if raw {
        j += 1;
    }
    if !raw {
        return (prefixed && chars.get(j) == Some(&'"')).then(|| skip_string(chars, j + 1));
    }
    let hashes = chars[j..].iter().take_while(|c| **c == '#').count();
    j += hashes;
    if chars.get(j) != Some(&'"') {
        return None; // `r#ident` or an identifier
    }
    j += 1;
    while j < chars.len() {
        if chars[j] == '"'
            && chars[j + 1..]
                .iter()
                .take(hashes)
                .filter(|c| **c == '#')
                .count()
                == hashes
        {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(j)
}

/// From `'` at `i`: a character literal (`'a'`, `'\n'`, `'\u{1F600}'`, `'"'`) or a lifetime or
/// label (`'a`, `'static`): the index after it.
fn skip_char_or_lifetime(chars: &[char], i: usize) -> usize {
    match chars.get(i + 1) {
        Some('\\') => {
            let mut j = i + 3;
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            j + 1
        }
        Some(_) if chars.get(i + 2) == Some(&'\'') => i + 3,
        _ => i + 1, // a lifetime: its name is lexed as an identifier, harmlessly
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_only_code_is_not_scanned_but_any_other_condition_is() {
        let src = "#[cfg(test)]\nmod pipeline_tests;\n#[cfg(test)]\n#[allow(x)]\nmod tests {\n    fn f() { tokio::spawn(async {}); }\n}\n#[cfg(test)]\nuse std::net::TcpListener;\n#[cfg(any(test, x))]\nfn g() { std::thread::spawn(|| ()); }\nfn h() { tokio::spawn(async {}); }\n";
        let lines: Vec<usize> = scan(src).iter().map(|f| f.line).collect();
        assert_eq!(lines, vec![11, 12]);
        assert_eq!(test_modules(src), vec!["pipeline_tests".to_owned()]);
    }

    fn found(source: &str) -> Vec<(Reach, usize)> {
        scan(source)
            .into_iter()
            .map(|f| (f.reach, f.line))
            .collect()
    }

    fn paths(source: &str) -> Vec<String> {
        scan(source).into_iter().map(|f| f.path).collect()
    }

    #[test]
    fn names_the_path_as_written_and_covers_tokio() {
        let src = "use std::{os::unix::net::UnixStream, fs::File};\nuse tokio::{fs, net::TcpListener, sync::Mutex};\nfn f() { let _ = tokio::process::Command::new(\"x\"); unsafe {} }\n";
        assert_eq!(
            paths(src),
            [
                "std::os::unix::net",
                "std::fs",
                "tokio::fs",
                "tokio::net",
                "tokio::process",
                "unsafe"
            ]
        );
        assert_eq!(
            paths("use tokio::sync::mpsc;\nuse my::tokio::fs;\n"),
            [] as [&str; 0]
        );
    }

    #[test]
    fn finds_http_clients_and_spawns_outside_the_host() {
        let src = "use reqwest::Client;\nfn f() {\n    let _ = hyper::Uri::default();\n    tokio::spawn(async {});\n    tokio::task::spawn_blocking(|| ());\n    std::thread::spawn(|| ());\n    let mut set = tokio::task::JoinSet::new();\n    set.spawn(async {});\n    let _ = my::reqwest::Client::new();\n}\n";
        assert_eq!(
            found(src),
            [
                (Reach::Net, 1),
                (Reach::Net, 3),
                (Reach::Spawn, 4),
                (Reach::Spawn, 5),
                (Reach::Spawn, 6)
            ]
        );
        assert_eq!(
            paths("// reqwest::get\nlet s = \"tokio::spawn\";\n"),
            [] as [&str; 0]
        );
    }

    #[test]
    fn finds_plain_and_absolute_paths_with_their_lines() {
        let src = "use std::sync::Arc;\nuse std::fs;\nfn f() {\n    let _ = ::std::net::TcpStream::connect(\"x\");\n    std::process::exit(1);\n}\n";
        assert_eq!(
            found(src),
            [(Reach::Fs, 2), (Reach::Net, 4), (Reach::Process, 5)]
        );
    }

    #[test]
    fn finds_uses_inside_groups_at_any_depth() {
        let src = "use std::{\n    io::{self, Read},\n    fs::{self, File},\n    collections::HashMap, net,\n};\nuse std::{os::unix::{process::CommandExt, net::UnixStream}};\nuse ::std::{process as p};\n";
        assert_eq!(
            found(src),
            [
                (Reach::Fs, 3),
                (Reach::Net, 4),
                (Reach::Process, 6),
                (Reach::Net, 6),
                (Reach::Process, 7)
            ]
        );
    }

    #[test]
    fn ignores_comments_strings_raw_strings_and_chars() {
        let src = r####"
// use std::fs;
/* std::net /* nested: unsafe */ std::process */
/// Calls `std::fs::read`; never `unsafe`.
const A: &str = "std::fs \" unsafe";
const B: &str = r#"std::net "still raw" unsafe"#;
const C: &[u8] = br##"std::process"#"##;
const D: &[u8] = b"unsafe";
const E: char = '"';
const F: char = '\'';
fn g<'a>(x: &'a str) -> &'a str { x }
"####;
        assert_eq!(found(src), []);
    }

    #[test]
    fn counts_lines_through_multi_line_comments_and_strings() {
        let src = "/* one\ntwo */\nconst S: &str = \"a\nb\";\nconst R: &str = r#\"c\nd\"#;\nunsafe fn h() {}\n";
        assert_eq!(found(src), [(Reach::Unsafe, 7)]);
    }

    #[test]
    fn finds_unsafe_blocks_fns_and_impls_but_not_lookalikes() {
        let src = "#![deny(unsafe_code)]\nunsafe impl Send for X {}\nfn f() { unsafe { g() } }\nlet unsafe_ok = 1;\n";
        assert_eq!(found(src), [(Reach::Unsafe, 2), (Reach::Unsafe, 3)]);
    }

    #[test]
    fn other_crates_modules_and_std_lookalikes_are_not_std() {
        let src = "use mycrate::std::fs;\nuse self::std::net;\nuse stdx::fs;\nuse std::io::Write;\nlet s = my_std::process::id();\nuse std::time::Duration;\n";
        assert_eq!(found(src), []);
    }

    #[test]
    fn raw_identifiers_and_prefix_letters_are_not_literals() {
        let src = "let r#type = 1;\nlet b = 2; let c = b;\nlet br = 3;\nuse std::fs;\n";
        assert_eq!(found(src), [(Reach::Fs, 4)]);
    }

    #[test]
    fn the_sdk_s_outbound_http_is_a_use_of_the_network() {
        let src = "use solobase_sdk::outbound::Request;\nlet a = self.ctx.http.send(r).await;\n\
                   let b = ctx.http.check(u);\nlet c = my.http.other();\n";
        let found: Vec<_> = scan(src).into_iter().map(|f| (f.path, f.line)).collect();
        assert_eq!(
            found,
            vec![
                ("solobase_sdk::outbound".to_owned(), 1),
                ("ctx.http".to_owned(), 2),
                ("ctx.http".to_owned(), 3),
            ]
        );
    }
}
