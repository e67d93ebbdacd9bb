//! Property tests against the real PostgreSQL: every compiled-in extension's migrations,
//! driven up and down through random sequences of target versions by the host's own
//! `runtime::migrate` (as the extension's role), keep the schema and the migration history
//! in step with the version reached, and down to zero leave nothing in the schema.
//!
//! Each case hits PostgreSQL many times: 12 cases by default, `PROPTEST_CASES` to change it.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use solobase::runtime::schema;
use solobase_sdk::schemars::JsonSchema;
use solobase_sdk::{ExtensionName, Migration, Registration};

use crate::helpers::{TestApp, connect, fresh_database};
use crate::runtime::isolation::Roles;

/// Every object in `schema` but the migration history table (with its index, constraint and
/// row type), described so that two states of the schema compare equal only when they are
/// the same: relations (tables, views, indexes, sequences …) with their kind, columns with
/// type, nullability and default, functions with their arguments, types and domains,
/// constraints with their definition, triggers, policies, rules, operators, collations,
/// extended statistics, text search configurations, conversions, extensions.
const OBJECTS: &str = "
WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = $1),
history AS (
    SELECT c.oid FROM pg_class c JOIN ns ON c.relnamespace = ns.oid
    WHERE c.relname = 'refinery_schema_history'
)
SELECT kind || ' ' || name FROM (
    SELECT 'relation ' || c.relkind::text AS kind, c.relname::text AS name
    FROM pg_class c JOIN ns ON c.relnamespace = ns.oid
    WHERE c.oid NOT IN (SELECT oid FROM history)
      AND NOT EXISTS (SELECT 1 FROM pg_index i
                      WHERE i.indexrelid = c.oid AND i.indrelid IN (SELECT oid FROM history))
    UNION ALL
    SELECT 'column', c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
        || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
        || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid JOIN ns ON c.relnamespace = ns.oid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
      AND c.oid NOT IN (SELECT oid FROM history)
    UNION ALL
    SELECT 'function', p.oid::regprocedure::text FROM pg_proc p JOIN ns ON p.pronamespace = ns.oid
    UNION ALL
    SELECT 'type ' || t.typtype::text, t.typname::text FROM pg_type t JOIN ns ON t.typnamespace = ns.oid
    WHERE t.typrelid = 0 AND t.typcategory <> 'A'
    UNION ALL
    SELECT 'constraint', co.conname || ' ' || pg_get_constraintdef(co.oid)
    FROM pg_constraint co JOIN ns ON co.connamespace = ns.oid
    WHERE co.conrelid NOT IN (SELECT oid FROM history)
    UNION ALL
    SELECT 'trigger', c.relname || '.' || t.tgname
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns ON c.relnamespace = ns.oid
    WHERE NOT t.tgisinternal
    UNION ALL
    SELECT 'policy', c.relname || '.' || p.polname
    FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN ns ON c.relnamespace = ns.oid
    UNION ALL
    SELECT 'rule', c.relname || '.' || r.rulename
    FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN ns ON c.relnamespace = ns.oid
    WHERE r.rulename <> '_RETURN'
    UNION ALL
    SELECT 'operator', o.oid::regoperator::text FROM pg_operator o JOIN ns ON o.oprnamespace = ns.oid
    UNION ALL
    SELECT 'collation', x.collname::text FROM pg_collation x JOIN ns ON x.collnamespace = ns.oid
    UNION ALL
    SELECT 'statistics', x.stxname::text FROM pg_statistic_ext x JOIN ns ON x.stxnamespace = ns.oid
    UNION ALL
    SELECT 'text search configuration', x.cfgname::text
    FROM pg_ts_config x JOIN ns ON x.cfgnamespace = ns.oid
    UNION ALL
    SELECT 'conversion', x.conname::text FROM pg_conversion x JOIN ns ON x.connamespace = ns.oid
    UNION ALL
    SELECT 'extension', x.extname::text FROM pg_extension x JOIN ns ON x.extnamespace = ns.oid
) objects
ORDER BY 1";

async fn objects(client: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    client
        .query(OBJECTS, &[&schema])
        .await
        .expect("the catalog query runs")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The cases: 12, or `PROPTEST_CASES`.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(12)
}

/// Migrates a fresh copy of the extension `reg` (under a new name, so a new schema and role)
/// to each of `targets` in turn — up with `schema::migrate`, down with `schema::rollback`
/// — and finally down to zero. After each step: the versions the step reports, the history,
/// and the schema's objects are those of the version reached (the objects as they were the
/// first time it was reached; none at zero).
async fn walk(
    roles: &Roles,
    client: &tokio_postgres::Client,
    reg: &Registration,
    targets: &[u32],
) -> Result<(), TestCaseError> {
    static FRESH: AtomicUsize = AtomicUsize::new(0);
    let migrations: Vec<Migration> = reg.migrations();
    let manifest = solobase_sdk::Manifest::parse(reg.manifest).expect("a valid manifest");
    let copy = format!(
        "prop-{}-{}",
        manifest.name,
        FRESH.fetch_add(1, Ordering::Relaxed)
    );
    let name = ExtensionName::parse(&copy).expect("a valid name");
    let schema = name.schema();
    let pool = roles.pool(&name).await;
    let mut seen: BTreeMap<u32, Vec<String>> = BTreeMap::from([(0, Vec::new())]);
    let mut at = 0u32;
    let steps = targets.iter().copied().chain([0]);
    let result = async {
        prop_assert_eq!(
            objects(client, &schema).await,
            Vec::<String>::new(),
            "a fresh schema"
        );
        for to in steps {
            let (done, expected): (Vec<i32>, Vec<i32>) = if to > at {
                let done = schema::migrate(roles.db.pool(), &pool, &name, &migrations, Some(to))
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{copy} up to {to}: {e}")))?;
                (done, (at + 1..=to).map(|v| v as i32).collect())
            } else {
                let done = schema::rollback(
                    roles.db.pool(),
                    &pool,
                    &name,
                    &migrations,
                    to,
                    &mut |_, _, _| {},
                )
                .await
                .map_err(|e| TestCaseError::fail(format!("{copy} down to {to}: {e}")))?;
                (done, (to + 1..=at).rev().map(|v| v as i32).collect())
            };
            prop_assert_eq!(
                done,
                expected,
                "{} from {} to {}: the versions applied",
                &copy,
                at,
                to
            );
            at = to;
            let history = schema::applied(client, &name)
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let wanted: Vec<(i32, String)> = migrations
                .iter()
                .filter(|m| m.version <= at)
                .map(|m| (m.version as i32, m.name.to_owned()))
                .collect();
            prop_assert_eq!(history, wanted, "{} at {}: the history", &copy, at);
            let now = objects(client, &schema).await;
            let before = seen.entry(at).or_insert_with(|| now.clone());
            prop_assert_eq!(&now, before, "{} at {}: the schema's objects", &copy, at);
        }
        Ok(())
    }
    .await;
    pool.close();
    result
}

/// Targets: 2 to 5 versions from 0 to the newest (repeats included: a no-op must do nothing).
fn targets(newest: u32) -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(0..=newest, 2..=5)
}

#[test]
fn migrations_up_and_down_keep_schema_and_history_in_step_and_zero_leaves_nothing() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let roles = runtime.block_on(Roles::new());
    let client = runtime.block_on(connect(&roles.db_name));
    let regs: Vec<Registration> = solobase::runtime::registrations()
        .into_iter()
        .filter(|r| !r.migrations().is_empty())
        .collect();
    let names: Vec<String> = regs
        .iter()
        .map(|r| {
            solobase_sdk::Manifest::parse(r.manifest)
                .expect("a valid manifest")
                .name
                .to_string()
        })
        .collect();
    for wanted in ["webhooks", "analytics", "probe"] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} is compiled in with its migrations: {names:?}"
        );
    }
    for (reg, name) in regs.iter().zip(&names) {
        let newest = reg
            .migrations()
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0);
        let mut runner = TestRunner::new(Config {
            cases: cases(),
            source_file: Some(file!()),
            ..Config::default()
        });
        let outcome = runner.run(&targets(newest), |targets| {
            runtime.block_on(walk(&roles, &client, reg, &targets))
        });
        if let Err(e) = outcome {
            panic!("{name}: {e}");
        }
    }
    runtime.block_on(roles.db.close());
}

/// A configuration whose every field derives from one generation number, so that a reader
/// holding parts of two versions would notice.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, JsonSchema)]
#[schemars(crate = "solobase_sdk::schemars")]
#[serde(deny_unknown_fields)]
struct Generation {
    generation: u64,
    label: String,
    /// `generation % 7 + 1` copies of the generation.
    copies: Vec<u64>,
    nested: Derived,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, JsonSchema)]
#[schemars(crate = "solobase_sdk::schemars")]
#[serde(deny_unknown_fields)]
struct Derived {
    double: u64,
    odd: bool,
}

impl Generation {
    fn of(generation: u64) -> Self {
        Self {
            generation,
            label: format!("generation {generation}"),
            copies: vec![generation; (generation % 7 + 1) as usize],
            nested: Derived {
                double: generation * 2,
                odd: generation % 2 == 1,
            },
        }
    }

    /// Whether it is exactly generation `self.generation`, not a mix.
    fn whole(&self) -> bool {
        *self == Self::of(self.generation)
    }
}

impl Default for Generation {
    fn default() -> Self {
        Self::of(0)
    }
}

/// The handle through which the running `Generations` extension reads its configuration.
static HANDLE: std::sync::Mutex<Option<solobase_sdk::ConfigHandle<Generation>>> =
    std::sync::Mutex::new(None);

/// An extension that only keeps its configuration handle where the readers find it.
struct Generations;

impl solobase_sdk::Extension for Generations {
    type Config = Generation;
    async fn initialize(ctx: solobase_sdk::InitContext<Generation>) -> solobase_sdk::Result<Self> {
        *HANDLE.lock().unwrap() = Some(ctx.config.clone());
        Ok(Generations)
    }
}

/// What the readers saw: snapshots read, and the generations in the order seen.
#[derive(Debug, Default)]
struct Seen {
    reads: u64,
    generations: Vec<u64>,
}

impl Seen {
    /// Every generation seen was published, and the last one published is the last seen.
    fn check(&self, published: &BTreeSet<u64>, last: Option<&u64>) -> Result<(), TestCaseError> {
        for g in &self.generations {
            prop_assert!(
                published.contains(g),
                "generation {} was never published",
                g
            );
        }
        prop_assert_eq!(self.generations.last(), last, "the last one stays");
        Ok(())
    }
}

/// Two readers, each seeing at least the last generation of every case: more means they
/// read while the writer was publishing.
fn assert_read_while_publishing(observed: usize, cases: usize) {
    assert!(
        observed > 2 * cases,
        "the readers saw only {observed} generations in {cases} cases"
    );
}

/// Reads `read` until `stop`; fails at the first snapshot that is a mix, or older than one
/// seen before.
fn reader(
    stop: &std::sync::atomic::AtomicBool,
    read: impl Fn() -> Result<u64, String>,
) -> Result<Seen, String> {
    let mut seen = Seen::default();
    loop {
        let last_round = stop.load(Ordering::Acquire);
        let generation = read()?;
        if let Some(&before) = seen.generations.last() {
            if generation < before {
                return Err(format!("generation {generation} seen after {before}"));
            }
            if generation != before {
                seen.generations.push(generation);
            }
        } else {
            seen.generations.push(generation);
        }
        seen.reads += 1;
        if last_round {
            return Ok(seen);
        }
        std::thread::yield_now();
    }
}

/// Generations to publish, ascending with random gaps.
fn generations() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(1u64..1000, 2..12).prop_map(|gaps| {
        gaps.iter()
            .scan(0, |g, gap| {
                *g += gap;
                Some(*g)
            })
            .collect()
    })
}

/// Hot reload of an extension's configuration, through the function the file watcher calls
/// (`ExtensionHost::reload_config_file`, after the file was written): while a writer publishes
/// random generations, reader threads — one on the extension's `ConfigHandle` (what its code
/// reads), one on the host's `config_state` (what the API and status read, with its entity
/// tag) — only ever see a whole published configuration, never an older one after a newer.
#[test]
fn a_config_reload_is_seen_whole_and_in_order() {
    use std::sync::atomic::AtomicBool;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let registration = Registration::new::<Generations>(
        "[extension]\nname = \"generations\"\nversion = \"0.1.0\"\n\
         description = \"d\"\nmin_host_version = \"0.1.0\"\n",
        "0.1.0",
    );
    let (app, _data) = runtime
        .block_on(async {
            TestApp::builder()
                .on(fresh_database().await)
                .extensions(vec![registration])
                .build()
                .await
        })
        .expect("the app builds");
    let host = app.extensions().clone();
    let loaded = host.get("generations").expect("loaded");
    assert!(
        loaded.ext().is_some(),
        "initialized: {:?}",
        loaded.failure()
    );
    let handle = HANDLE.lock().unwrap().clone().expect("initialized");
    let file = solobase::runtime::config_file::path(host.config_dir(), "generations");
    std::fs::create_dir_all(host.config_dir()).expect("the configuration directory");
    let published: RefCell<BTreeSet<u64>> = RefCell::new([0].into());
    let (observed, cases) = (Cell::new(0), Cell::new(0));

    let mut runner = TestRunner::new(Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(32),
        source_file: Some(file!()),
        ..Config::default()
    });
    // Each case (shrunk ones too) continues above the generations published before: the
    // writer's generations only grow.
    let base = Cell::new(0);
    let outcome = runner.run(&generations(), |gens| {
        let gens: Vec<u64> = gens.iter().map(|g| g + base.get()).collect();
        let stop = AtomicBool::new(false);
        let (seen_by_handle, seen_by_state) = std::thread::scope(|s| {
            let by_handle = s.spawn(|| {
                reader(&stop, || {
                    let c = handle.get();
                    c.whole()
                        .then_some(c.generation)
                        .ok_or_else(|| format!("a mix: {c:?}"))
                })
            });
            let by_state = s.spawn(|| {
                reader(&stop, || {
                    let (value, etag) = loaded.config_state.current();
                    // No file yet (`null`): the defaults, generation 0.
                    let c: Generation = if value.is_null() {
                        Generation::default()
                    } else {
                        serde_json::from_value(value.clone())
                            .map_err(|e| format!("{value}: {e}"))?
                    };
                    if etag != solobase::runtime::reconfigure::etag(&value) {
                        return Err(format!("{value} with the entity tag of another: {etag}"));
                    }
                    c.whole()
                        .then_some(c.generation)
                        .ok_or_else(|| format!("a mix: {c:?}"))
                })
            });
            let written = runtime.block_on(async {
                for &g in &gens {
                    let text = toml::to_string(&Generation::of(g)).expect("TOML");
                    std::fs::write(&file, text).expect("the file is written");
                    host.reload_config_file("generations").await;
                    let (now, _) = loaded.config_state.current();
                    if now != serde_json::to_value(Generation::of(g)).expect("JSON") {
                        return Err(format!("generation {g} was not applied: {now}"));
                    }
                }
                Ok(())
            });
            stop.store(true, Ordering::Release);
            (written.map(|()| by_handle.join()), by_state.join())
        });
        published.borrow_mut().extend(&gens);
        base.set(*gens.last().expect("two at least"));
        let fail = |e: String| TestCaseError::fail(e);
        let by_handle = seen_by_handle
            .map_err(fail)?
            .expect("the reader ends")
            .map_err(fail)?;
        let by_state = seen_by_state.expect("the reader ends").map_err(fail)?;
        cases.set(cases.get() + 1);
        for seen in [&by_handle, &by_state] {
            observed.set(observed.get() + seen.generations.len());
            seen.check(&published.borrow(), gens.last())?;
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    assert_read_while_publishing(observed.get(), cases.get());
    runtime.block_on(async move {
        host.shutdown().await;
        drop(app);
    });
}

/// An extension without configuration, whose limits the host's configuration sets.
struct Limited;

impl solobase_sdk::Extension for Limited {
    type Config = ();
    async fn initialize(_: solobase_sdk::InitContext<()>) -> solobase_sdk::Result<Self> {
        Ok(Limited)
    }
}

/// The host's configuration file of generation `g`: every limit of `limited-gens` derives
/// from `g`.
fn limits_file(g: u64) -> String {
    format!(
        "[extensions.limits.limited-gens]\nrate_per_second = {}\nrate_burst = {}\n\
         client_rate_per_second = {}\nclient_rate_burst = {}\nmax_in_flight = {}\n\
         cpu_budget_ms = {}\n",
        g,
        g + 1,
        g + 2,
        g + 3,
        g + 4,
        g + 5
    )
}

/// The generation of a set of limits (rates, bursts, in-flight, CPU budget), unless it mixes
/// several.
fn generation_of(limits: [u64; 6]) -> Result<u64, String> {
    let g = limits[0];
    (limits == [g, g + 1, g + 2, g + 3, g + 4, g + 5])
        .then_some(g)
        .ok_or_else(|| format!("a mix: {limits:?}"))
}

/// Hot reload of the host's configuration file, through the function the watcher calls
/// (`reload::reload`): while a writer publishes random generations of an extension's limits,
/// reader threads — one on what its requests read (`live_limits`), one on what the API and
/// status serve (`limits_of`) — only ever see the limits of one published generation, and
/// never an older one after a newer.
#[test]
fn a_host_config_reload_changes_an_extensions_limits_as_one() {
    use std::sync::atomic::AtomicBool;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let registration = Registration::new::<Limited>(
        "[extension]\nname = \"limited-gens\"\nversion = \"0.1.0\"\n\
         description = \"d\"\nmin_host_version = \"0.1.0\"\n",
        "0.1.0",
    );
    let (app, data) = runtime
        .block_on(async {
            TestApp::builder()
                .on(fresh_database().await)
                .extensions(vec![registration])
                .build()
                .await
        })
        .expect("the app builds");
    let host = app.extensions().clone();
    let pool = app.state().pool.clone();
    let file = data.0.join("solobase.toml");
    let running = RefCell::new((*app.state().config).clone());
    let publish = |g: u64| {
        std::fs::write(&file, limits_file(g)).expect("the file is written");
        let applied = runtime.block_on(solobase::reload::reload(
            &file,
            &running.borrow(),
            &host,
            &pool,
        ));
        match applied {
            Some(config) => {
                *running.borrow_mut() = config;
                Ok(())
            }
            None => Err(format!("generation {g} was refused")),
        }
    };
    publish(1).expect("the first generation applies");

    let mut runner = TestRunner::new(Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(32),
        source_file: Some(file!()),
        ..Config::default()
    });
    let published: RefCell<BTreeSet<u64>> = RefCell::new([1].into());
    let (observed, cases) = (Cell::new(0), Cell::new(0));
    let base = Cell::new(1);
    let outcome = runner.run(&generations(), |gens| {
        let gens: Vec<u64> = gens.iter().map(|g| g + base.get()).collect();
        let stop = AtomicBool::new(false);
        let (written, by_requests, by_status) = std::thread::scope(|s| {
            let by_requests = s.spawn(|| {
                reader(&stop, || {
                    let live = host.live_limits("limited-gens").ok_or("not loaded")?;
                    let (all, each) = live.rates.rates();
                    generation_of([
                        all.per_second.into(),
                        all.burst.into(),
                        each.per_second.into(),
                        each.burst.into(),
                        live.max_in_flight as u64,
                        live.cpu_budget.as_millis() as u64,
                    ])
                })
            });
            let by_status = s.spawn(|| {
                reader(&stop, || {
                    let v = serde_json::to_value(host.limits_of("limited-gens")).unwrap();
                    let n = |x: &serde_json::Value| x.as_u64().unwrap_or(u64::MAX);
                    generation_of([
                        n(&v["rate"]["per_second"]),
                        n(&v["rate"]["burst"]),
                        n(&v["client_rate"]["per_second"]),
                        n(&v["client_rate"]["burst"]),
                        n(&v["max_in_flight"]),
                        n(&v["cpu_budget_ms"]),
                    ])
                })
            });
            let written: Result<(), String> = gens.iter().try_for_each(|&g| publish(g));
            stop.store(true, Ordering::Release);
            (written, by_requests.join(), by_status.join())
        });
        published.borrow_mut().extend(&gens);
        base.set(*gens.last().expect("two at least"));
        let fail = |e: String| TestCaseError::fail(e);
        written.map_err(fail)?;
        cases.set(cases.get() + 1);
        for seen in [by_requests, by_status] {
            let seen = seen.expect("the reader ends").map_err(fail)?;
            observed.set(observed.get() + seen.generations.len());
            seen.check(&published.borrow(), gens.last())?;
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    assert_read_while_publishing(observed.get(), cases.get());
    runtime.block_on(async move {
        host.shutdown().await;
        drop(app);
    });
}
