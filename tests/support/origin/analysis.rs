//! The deterministic generator behind every analysis answer.
//!
//! Values are pseudo-random but derived only from `(repository id, analysis version)` through a
//! SplitMix64 stream, so the same question always gets byte-identical JSON (what a cache may
//! serve) and a re-analysis changes the answer (what a cache must not keep serving). No `rand`:
//! the generator must never change under us with a dependency update.

use serde_json::{Map, Value, json};

/// 2025-01-01T00:00:00Z: the first analysis of every repository happens shortly after.
pub const EPOCH: u64 = 1_735_689_600;

const LANGUAGES: [&str; 8] = [
    "Rust",
    "Go",
    "TypeScript",
    "Python",
    "Java",
    "Kotlin",
    "C#",
    "Ruby",
];
const SECONDARY: [&str; 6] = ["Shell", "SQL", "YAML", "Dockerfile", "HCL", "Markdown"];
const DOMAINS: [&str; 20] = [
    "billing",
    "catalog",
    "checkout",
    "inventory",
    "ledger",
    "notifications",
    "payments",
    "search",
    "shipping",
    "auth",
    "reporting",
    "scheduler",
    "gateway",
    "analytics",
    "onboarding",
    "pricing",
    "recommendations",
    "audit",
    "identity",
    "media",
];
const KINDS: [&str; 8] = [
    "service", "api", "worker", "web", "core", "sdk", "pipeline", "cli",
];
const MODULES: [&str; 10] = [
    "handlers", "domain", "storage", "client", "jobs", "auth", "config", "events", "models", "util",
];
const FILES: [&str; 10] = [
    "mod",
    "service",
    "repository",
    "router",
    "validation",
    "mapper",
    "worker",
    "cache",
    "retry",
    "schema",
];

/// A SplitMix64 stream.
pub struct Rng(u64);

impl Rng {
    pub fn new(parts: &[u64]) -> Self {
        let seed = parts
            .iter()
            .fold(0x5CA7_0A11_D00D_F00D, |state: u64, part| {
                mix(state ^ part.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            });
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `low..=high`.
    fn int(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[low, high)`, rounded to two decimals so the JSON reads like a report.
    fn float(&mut self, low: f64, high: f64) -> f64 {
        round2(low + (high - low) * self.unit())
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.next() as usize % items.len()]
    }

    /// `count` distinct items, in random order.
    fn sample<'a, T>(&mut self, items: &'a [T], count: usize) -> Vec<&'a T> {
        let mut order: Vec<usize> = (0..items.len()).collect();
        let count = count.min(items.len());
        for i in 0..count {
            let j = i + self.next() as usize % (items.len() - i);
            order.swap(i, j);
        }
        order[..count].iter().map(|&i| &items[i]).collect()
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// What does not change when a repository is re-analysed.
pub struct Identity {
    pub name: String,
    pub language: &'static str,
}

impl Identity {
    pub fn of(id: u64) -> Self {
        // (index % 20, (index + 5 * (index / 20)) % 8) is one-to-one for the first 160 ids.
        let index = id.saturating_sub(1);
        let domain = DOMAINS[(index % 20) as usize];
        let kind = KINDS[((index + 5 * (index / 20)) % 8) as usize];
        let name = if index < 160 {
            format!("{domain}-{kind}")
        } else {
            format!("{domain}-{kind}-{id}")
        };
        let language = *Rng::new(&[id, 0x1D]).pick(&LANGUAGES);
        Self { name, language }
    }

    pub fn url(&self) -> String {
        format!("https://git.example.com/acme/{}", self.name)
    }
}

/// When version `version` of repository `id` was analysed, as RFC 3339.
pub fn analyzed_at(id: u64, version: u64) -> String {
    rfc3339(EPOCH + id * 2_357 + version.saturating_sub(1) * 86_400)
}

/// The repository as listed (no analysis details).
pub fn listing(id: u64, version: u64) -> Value {
    let identity = Identity::of(id);
    json!({
        "id": id,
        "name": identity.name,
        "url": identity.url(),
        "language": identity.language,
        "analysis_version": version,
        "last_analyzed_at": analyzed_at(id, version),
    })
}

/// The headline numbers of an analysis, shared by the repository answer and the insights.
pub struct Summary {
    pub loc_total: u64,
    pub cyclomatic_mean: f64,
    pub maintainability_index: f64,
    pub test_coverage_estimate: f64,
    pub risk_score: f64,
}

impl Summary {
    pub fn of(id: u64, version: u64) -> Self {
        // LOC mostly depends on the repository, a little on the analysis.
        let base = Rng::new(&[id, 0x10C]).int(8_000, 400_000);
        let mut rng = Rng::new(&[id, version, 0x5A]);
        let drift = rng.int(0, base / 20);
        Self {
            loc_total: base + drift,
            cyclomatic_mean: rng.float(1.8, 9.5),
            maintainability_index: rng.float(42.0, 92.0),
            test_coverage_estimate: rng.float(12.0, 94.0),
            risk_score: rng.float(0.05, 0.95),
        }
    }
}

/// Lines of code per language, primary language first; sums to the code lines.
pub fn language_mix(id: u64, version: u64, loc_code: u64) -> Vec<(&'static str, u64)> {
    let primary = Identity::of(id).language;
    let mut rng = Rng::new(&[id, version, 0x1A]);
    let mut remaining = loc_code;
    let primary_loc = loc_code * rng.int(55, 90) / 100;
    remaining -= primary_loc;
    let mut mix = vec![(primary, primary_loc)];
    let others = rng.int(1, 3) as usize;
    for (i, language) in rng.sample(&SECONDARY, others).into_iter().enumerate() {
        let loc = if i + 1 == others {
            remaining
        } else {
            remaining * rng.int(30, 70) / 100
        };
        remaining -= loc;
        mix.push((language, loc));
    }
    mix
}

fn extension(language: &str) -> &'static str {
    match language {
        "Rust" => "rs",
        "Go" => "go",
        "TypeScript" => "ts",
        "Python" => "py",
        "Java" => "java",
        "Kotlin" => "kt",
        "C#" => "cs",
        _ => "rb",
    }
}

fn source_path(rng: &mut Rng, language: &str) -> String {
    format!(
        "src/{}/{}.{}",
        rng.pick(&MODULES),
        rng.pick(&FILES),
        extension(language)
    )
}

fn grade(score: f64, thresholds: [f64; 4]) -> &'static str {
    match score {
        s if s >= thresholds[0] => "A",
        s if s >= thresholds[1] => "B",
        s if s >= thresholds[2] => "C",
        s if s >= thresholds[3] => "D",
        _ => "E",
    }
}

/// The `complexity_analysis` object of a repository: 86 fields.
pub fn complexity_analysis(id: u64, version: u64) -> Map<String, Value> {
    let identity = Identity::of(id);
    let summary = Summary::of(id, version);
    let mut rng = Rng::new(&[id, version, 0xC0]);
    let mut fields = Map::new();
    let mut put = |key: &str, value: Value| {
        fields.insert(key.to_owned(), value);
    };

    // Size.
    let loc = summary.loc_total;
    let loc_comment = loc * rng.int(6, 22) / 100;
    let loc_blank = loc * rng.int(8, 14) / 100;
    let loc_code = loc - loc_comment - loc_blank;
    let files = (loc / rng.int(120, 380)).max(1);
    let functions = (loc_code / rng.int(14, 40)).max(1);
    put("loc_total", json!(loc));
    put("loc_code", json!(loc_code));
    put("loc_comment", json!(loc_comment));
    put("loc_blank", json!(loc_blank));
    put(
        "comment_ratio",
        json!(round2(loc_comment as f64 / loc_code as f64)),
    );
    let by_language: Map<String, Value> = language_mix(id, version, loc_code)
        .into_iter()
        .map(|(language, loc)| (language.to_owned(), json!(loc)))
        .collect();
    put("loc_by_language", Value::Object(by_language));
    let skipped = rng.int(0, files / 25 + 1);
    put("files_total", json!(files + skipped));
    put("files_analyzed", json!(files));
    put("files_skipped", json!(skipped));
    put("modules_total", json!((files / rng.int(6, 15)).max(1)));
    put("classes_total", json!(files * rng.int(60, 180) / 100));
    put("functions_total", json!(functions));
    put("avg_function_length", json!(rng.float(8.0, 34.0)));
    put("max_function_length", json!(rng.int(120, 900)));
    put("long_functions", json!(functions * rng.int(1, 6) / 100));
    put("avg_parameters", json!(rng.float(1.2, 3.8)));
    put("max_parameters", json!(rng.int(6, 17)));

    // Control-flow complexity.
    let mean = summary.cyclomatic_mean;
    put("cyclomatic_mean", json!(mean));
    put(
        "cyclomatic_median",
        json!(round2(mean * rng.float(0.6, 0.9))),
    );
    put("cyclomatic_p90", json!(round2(mean * rng.float(2.0, 3.5))));
    put("cyclomatic_p99", json!(round2(mean * rng.float(4.0, 8.0))));
    put("cyclomatic_max", json!(rng.int(40, 180)));
    put(
        "cyclomatic_total",
        json!((mean * functions as f64).round() as u64),
    );
    put("functions_over_10", json!(functions * rng.int(4, 15) / 100));
    put("functions_over_20", json!(functions * rng.int(1, 4) / 100));
    put("cognitive_mean", json!(round2(mean * rng.float(1.1, 1.9))));
    put("cognitive_max", json!(rng.int(60, 260)));
    put("avg_nesting_depth", json!(rng.float(1.3, 3.2)));
    put("max_nesting_depth", json!(rng.int(5, 12)));
    put("halstead_volume", json!(rng.float(1.0e5, 9.0e6)));
    put("halstead_difficulty", json!(rng.float(18.0, 95.0)));
    put("halstead_effort", json!(rng.float(2.0e6, 8.0e8)));
    put("halstead_estimated_bugs", json!(rng.float(3.0, 420.0)));

    // Maintainability.
    let mi = summary.maintainability_index;
    put("maintainability_index", json!(mi));
    put(
        "maintainability_grade",
        json!(grade(mi, [85.0, 70.0, 55.0, 45.0])),
    );
    let duplication = rng.float(0.5, 18.0);
    put("duplication_percent", json!(duplication));
    put(
        "duplicated_lines",
        json!((loc_code as f64 * duplication / 100.0) as u64),
    );
    put("duplicated_blocks", json!(rng.int(3, 400)));
    put("duplicated_files", json!(files * rng.int(1, 12) / 100));

    // Tests.
    let test_files = files * rng.int(10, 45) / 100;
    put(
        "test_coverage_estimate",
        json!(summary.test_coverage_estimate),
    );
    put("test_files", json!(test_files));
    put("test_to_code_ratio", json!(rng.float(0.1, 1.2)));
    put("assertions_estimate", json!(test_files * rng.int(8, 40)));

    // History.
    let commits_90d = rng.int(15, 900);
    put(
        "churn_commits_30d",
        json!(commits_90d * rng.int(20, 45) / 100),
    );
    put("churn_commits_90d", json!(commits_90d));
    put(
        "churn_lines_added_90d",
        json!(commits_90d * rng.int(20, 140)),
    );
    put(
        "churn_lines_deleted_90d",
        json!(commits_90d * rng.int(10, 90)),
    );
    let contributors = rng.int(1, 40);
    put("contributors_90d", json!(contributors));
    put("bus_factor", json!(rng.int(1, contributors.clamp(1, 6))));
    let hotspots: Vec<Value> = (0..rng.int(3, 6))
        .map(|_| {
            json!({
                "path": source_path(&mut rng, identity.language),
                "commits_90d": rng.int(5, 120),
                "cyclomatic_max": rng.int(15, 120),
                "hotspot_score": rng.float(0.3, 1.0),
            })
        })
        .collect();
    put("hotspots", Value::Array(hotspots));

    // Smells and debt.
    let smells = [
        ("long_method", rng.int(0, 120)),
        ("god_class", rng.int(0, 25)),
        ("feature_envy", rng.int(0, 80)),
        ("data_clumps", rng.int(0, 60)),
        ("primitive_obsession", rng.int(0, 90)),
    ];
    put(
        "code_smells",
        json!(smells.iter().map(|(_, n)| n).sum::<u64>()),
    );
    put(
        "smell_breakdown",
        Value::Object(
            smells
                .iter()
                .map(|(name, n)| ((*name).to_owned(), json!(n)))
                .collect(),
        ),
    );
    let debt_ratio = rng.float(0.5, 22.0);
    put("technical_debt_hours", json!(rng.int(8, 4_000)));
    put("technical_debt_ratio", json!(debt_ratio));
    put(
        "debt_grade",
        json!(grade(-debt_ratio, [-5.0, -10.0, -20.0, -50.0])),
    );

    // Security and dependencies.
    put("security_findings_high", json!(rng.int(0, 4)));
    put("security_findings_medium", json!(rng.int(0, 15)));
    put("security_findings_low", json!(rng.int(0, 40)));
    let dependencies = rng.int(12, 420);
    put("dependencies_total", json!(dependencies));
    put(
        "dependencies_outdated",
        json!(dependencies * rng.int(5, 45) / 100),
    );
    put("dependencies_vulnerable", json!(rng.int(0, 9)));
    put("license_issues", json!(rng.int(0, 3)));
    put("todo_comments", json!(rng.int(0, 350)));
    put("fixme_comments", json!(rng.int(0, 60)));
    put("dead_code_percent", json!(rng.float(0.0, 9.0)));

    // Structure.
    let afferent = rng.float(0.5, 12.0);
    let efferent = rng.float(0.5, 12.0);
    let instability = round2(efferent / (afferent + efferent));
    let abstractness = rng.float(0.0, 0.6);
    put("afferent_coupling_avg", json!(afferent));
    put("efferent_coupling_avg", json!(efferent));
    put("instability", json!(instability));
    put("abstractness", json!(abstractness));
    put(
        "distance_from_main_sequence",
        json!(round2((abstractness + instability - 1.0).abs())),
    );
    put("lcom_avg", json!(rng.float(0.1, 0.9)));
    put("inheritance_depth_max", json!(rng.int(1, 9)));
    put("fan_in_max", json!(rng.int(5, 140)));
    put("fan_out_max", json!(rng.int(5, 90)));
    put("circular_dependencies", json!(rng.int(0, 12)));

    // Documentation and tooling.
    let public_items = functions * rng.int(10, 35) / 100;
    put("doc_coverage_percent", json!(rng.float(5.0, 95.0)));
    put("public_api_items", json!(public_items));
    put(
        "undocumented_public_items",
        json!(public_items * rng.int(5, 80) / 100),
    );
    put("lint_warnings", json!(rng.int(0, 900)));
    put("type_coverage_percent", json!(rng.float(40.0, 100.0)));
    put("build_time_estimate_seconds", json!(rng.int(20, 1_800)));

    // Verdict.
    let risk = summary.risk_score;
    put(
        "complexity_trend",
        json!(*rng.pick(&["improving", "stable", "degrading"])),
    );
    put("risk_score", json!(risk));
    put(
        "risk_level",
        json!(match risk {
            r if r >= 0.75 => "critical",
            r if r >= 0.5 => "high",
            r if r >= 0.25 => "medium",
            _ => "low",
        }),
    );
    put(
        "analyzer",
        json!({"name": "scat-complexity", "version": "4.2.1"}),
    );
    put("analysis_duration_ms", json!(rng.int(2_000, 240_000)));
    fields
}

/// The AI-derived features of a repository.
pub fn ai_features(id: u64, version: u64) -> Value {
    const FEATURES: [(&str, &str); 12] = [
        ("Authentication flow", "security"),
        ("Payment processing", "domain"),
        ("Rate limiting", "infrastructure"),
        ("Caching layer", "infrastructure"),
        ("Event sourcing", "domain"),
        ("Search indexing", "domain"),
        ("Feature flags", "infrastructure"),
        ("Audit logging", "observability"),
        ("Background jobs", "infrastructure"),
        ("Data export", "domain"),
        ("Notification fan-out", "domain"),
        ("Multi-tenancy", "security"),
    ];
    let identity = Identity::of(id);
    let mut rng = Rng::new(&[id, version, 0xA1]);
    let count = rng.int(4, 7) as usize;
    let features: Vec<Value> = rng
        .sample(&FEATURES, count)
        .into_iter()
        .map(|(name, category)| {
            let modules = rng.int(1, 9);
            let evidence: Vec<String> = (0..rng.int(1, 4))
                .map(|_| source_path(&mut rng, identity.language))
                .collect();
            json!({
                "name": name,
                "category": category,
                "confidence": rng.float(0.55, 0.99),
                "summary": format!(
                    "{name} is implemented across {modules} module(s) of {}; \
                     entry points are covered by {} test(s).",
                    identity.name,
                    rng.int(0, 40),
                ),
                "evidence_files": evidence,
            })
        })
        .collect();
    json!({
        "repository_id": id,
        "repository": identity.name,
        "analysis_version": version,
        "model": "scat-insight-2",
        "generated_at": analyzed_at(id, version),
        "tokens_used": rng.int(4_000, 60_000),
        "summary": format!(
            "{} is a {} codebase exposing {count} distinct capabilities.",
            identity.name, identity.language
        ),
        "features": features,
    })
}

/// The tech stack of a repository, with staffing estimates and complexity scoring.
pub fn tech_stack(id: u64, version: u64) -> Value {
    let identity = Identity::of(id);
    let summary = Summary::of(id, version);
    let mut rng = Rng::new(&[id, version, 0x7E]);
    let frameworks: &[(&str, &str)] = match identity.language {
        "Rust" => &[
            ("axum", "0.8"),
            ("tokio", "1.47"),
            ("sqlx", "0.8"),
            ("serde", "1.0"),
        ],
        "Go" => &[
            ("gin", "1.10"),
            ("gorm", "1.25"),
            ("cobra", "1.8"),
            ("zap", "1.27"),
        ],
        "TypeScript" => &[
            ("NestJS", "10.4"),
            ("React", "18.3"),
            ("Prisma", "5.20"),
            ("Jest", "29.7"),
        ],
        "Python" => &[
            ("FastAPI", "0.115"),
            ("SQLAlchemy", "2.0"),
            ("Celery", "5.4"),
            ("pytest", "8.3"),
        ],
        "Java" => &[
            ("Spring Boot", "3.3"),
            ("Hibernate", "6.5"),
            ("JUnit", "5.11"),
            ("Micrometer", "1.13"),
        ],
        "Kotlin" => &[
            ("Ktor", "2.3"),
            ("Exposed", "0.54"),
            ("Koin", "3.5"),
            ("Kotest", "5.9"),
        ],
        "C#" => &[
            ("ASP.NET Core", "8.0"),
            ("Entity Framework", "8.0"),
            ("xUnit", "2.9"),
            ("Polly", "8.4"),
        ],
        _ => &[
            ("Rails", "7.2"),
            ("Sidekiq", "7.3"),
            ("RSpec", "3.13"),
            ("Puma", "6.4"),
        ],
    };
    let infrastructure = [
        "PostgreSQL",
        "Redis",
        "Kafka",
        "RabbitMQ",
        "Elasticsearch",
        "S3",
        "Kubernetes",
        "Terraform",
    ];
    let loc_code = summary.loc_total * 78 / 100;
    let languages: Vec<Value> = language_mix(id, version, loc_code)
        .into_iter()
        .map(|(name, loc)| {
            json!({
                "name": name,
                "loc": loc,
                "share_percent": round2(loc as f64 * 100.0 / loc_code as f64),
            })
        })
        .collect();
    let framework_count = rng.int(2, 4) as usize;
    let frameworks: Vec<Value> = rng
        .sample(frameworks, framework_count)
        .into_iter()
        .map(|(name, release)| json!({"name": name, "version": release, "category": "framework"}))
        .collect();
    let infrastructure_count = rng.int(2, 5) as usize;
    let infrastructure: Vec<&str> = rng
        .sample(&infrastructure, infrastructure_count)
        .into_iter()
        .copied()
        .collect();
    let development = round2(summary.loc_total as f64 / 60_000.0 + rng.float(0.2, 1.5));
    let maintenance = round2(development * rng.float(0.2, 0.6));
    let area = |rng: &mut Rng| rng.float(1.0, 10.0);
    let by_area = json!({
        "architecture": area(&mut rng),
        "dependencies": area(&mut rng),
        "domain": area(&mut rng),
        "operations": area(&mut rng),
        "testing": area(&mut rng),
    });
    let overall = round2(
        by_area
            .as_object()
            .map(|areas| areas.values().filter_map(Value::as_f64).sum::<f64>() / 5.0)
            .unwrap_or_default(),
    );
    json!({
        "repository_id": id,
        "repository": identity.name,
        "analysis_version": version,
        "primary_language": identity.language,
        "languages": languages,
        "frameworks": frameworks,
        "infrastructure": infrastructure,
        "fte_estimate": {
            "development": development,
            "maintenance": maintenance,
            "total": round2(development + maintenance),
            "confidence": rng.float(0.5, 0.9),
            "basis": "loc, churn and complexity over the last 90 days",
        },
        "complexity_scoring": {
            "overall": overall,
            "by_area": by_area,
            "grade": grade(-overall, [-3.0, -5.0, -7.0, -9.0]),
            "scale": "1 (simple) to 10 (very complex)",
        },
        "analyzed_at": analyzed_at(id, version),
    })
}

/// Aggregates over every repository; `versions[i]` is the version of repository `i + 1`.
pub fn insights(versions: &[u64]) -> Value {
    let insights_version: u64 = versions.iter().sum();
    let summaries: Vec<(u64, Summary)> = (1u64..)
        .zip(versions)
        .map(|(id, &version)| (id, Summary::of(id, version)))
        .collect();
    let repositories = summaries.len().max(1) as f64;
    let average = |metric: fn(&Summary) -> f64| {
        round2(summaries.iter().map(|(_, s)| metric(s)).sum::<f64>() / repositories)
    };
    let mut languages: Vec<(&str, u64, u64)> = Vec::new();
    for (id, summary) in &summaries {
        let language = Identity::of(*id).language;
        match languages.iter_mut().find(|(name, _, _)| *name == language) {
            Some((_, count, loc)) => {
                *count += 1;
                *loc += summary.loc_total;
            }
            None => languages.push((language, 1, summary.loc_total)),
        }
    }
    languages.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(b.0)));
    let mut riskiest: Vec<&(u64, Summary)> = summaries.iter().collect();
    riskiest.sort_by(|a, b| {
        b.1.risk_score
            .total_cmp(&a.1.risk_score)
            .then(a.0.cmp(&b.0))
    });
    json!({
        "insights_version": insights_version,
        "generated_at": rfc3339(EPOCH + 30 * 86_400 + insights_version * 60),
        "repositories_total": summaries.len(),
        "loc_total": summaries.iter().map(|(_, s)| s.loc_total).sum::<u64>(),
        "average_cyclomatic_complexity": average(|s| s.cyclomatic_mean),
        "average_maintainability_index": average(|s| s.maintainability_index),
        "average_test_coverage": average(|s| s.test_coverage_estimate),
        "average_risk_score": average(|s| s.risk_score),
        "top_languages": languages.iter().take(5).map(|(language, count, loc)| json!({
            "language": language,
            "repositories": count,
            "loc": loc,
        })).collect::<Vec<_>>(),
        "riskiest_repositories": riskiest.iter().take(5).map(|(id, summary)| json!({
            "id": id,
            "name": Identity::of(*id).name,
            "risk_score": summary.risk_score,
        })).collect::<Vec<_>>(),
    })
}

/// A unit-length 16-dimension embedding of `text` (same text, same vector).
pub fn embedding(text: &str) -> Vec<f32> {
    // FNV-1a over the bytes seeds the stream.
    let hash = text.bytes().fold(0xCBF2_9CE4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3)
    });
    let mut rng = Rng::new(&[hash, 0xE6]);
    let raw: Vec<f64> = (0..16).map(|_| rng.unit() * 2.0 - 1.0).collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::EPSILON);
    raw.iter().map(|x| (x / norm) as f32).collect()
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: u64) -> String {
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
