//! Tests of the settings: precedence, the unknown-variable warning, and that every rule is
//! enforced the same way whichever source set the value.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_use_local_services_on_standard_ports() {
    let (s, warnings) = Settings::load(None, env(&[])).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(s.server.port, 8080);
    assert_eq!(s.server.host.to_string(), "127.0.0.1");
    assert!(s.database.url.expose().contains("127.0.0.1:5432"));
    assert_eq!(s.redis.url.expose(), "redis://127.0.0.1:6379");
}

#[test]
fn environment_overrides_defaults_and_file() {
    let dir = std::env::temp_dir().join(format!("konstruct-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("konstruct.toml");
    std::fs::write(
        &file,
        "[server]\nport = 9000\nhost = \"0.0.0.0\"\n[log]\nformat = \"json\"\n",
    )
    .unwrap();
    let (s, warnings) = Settings::load(
        Some(&file),
        env(&[
            ("KONSTRUCT_PORT", "9100"),
            ("KONSTRUCT_REDIS_URL", "redis://cache:6380"),
            ("PATH", "/usr/bin"),
        ]),
    )
    .unwrap();
    assert!(warnings.is_empty());
    // The environment beats the file, the file beats the defaults.
    assert_eq!(s.server.port, 9100);
    assert_eq!(s.server.host.to_string(), "0.0.0.0");
    assert_eq!(s.log.format, LogFormat::Json);
    assert_eq!(s.redis.url.expose(), "redis://cache:6380");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_konstruct_variables_are_warned_about_and_others_ignored() {
    let (_, warnings) = Settings::load(
        None,
        env(&[
            ("KONSTRUCT_DATABSE_URL", "postgres://typo"),
            ("KONSTRUCT_CONFIG", "/dev/null"),
            ("HOME", "/root"),
        ]),
    )
    .unwrap();
    assert_eq!(
        warnings,
        vec![ConfigWarning::UnknownVariable {
            name: "KONSTRUCT_DATABSE_URL".into()
        }]
    );
    let text = warnings[0].to_string();
    assert!(text.contains("KONSTRUCT_DATABSE_URL"));
    assert!(
        text.contains("KONSTRUCT_DATABASE_URL"),
        "lists the known names: {text}"
    );
    assert!(!text.contains("postgres://typo"), "never echoes values");
}

#[test]
fn invalid_values_name_the_variable_but_not_the_value() {
    let err = Settings::load(None, env(&[("KONSTRUCT_PORT", "eighty")])).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("KONSTRUCT_PORT"), "{text}");
    assert!(!text.contains("eighty"), "{text}");
    let err = Settings::load(None, env(&[("KONSTRUCT_LOG_FORMAT", "xml")])).unwrap_err();
    assert!(err.to_string().contains("KONSTRUCT_LOG_FORMAT"));
}

#[test]
fn unknown_keys_in_the_file_are_an_error() {
    let dir = std::env::temp_dir().join(format!("konstruct-config-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("konstruct.toml");
    std::fs::write(&file, "[server]\nprot = 1\n").unwrap();
    let err = Settings::load(Some(&file), env(&[])).unwrap_err();
    assert!(matches!(err, ConfigError::ParseFile { .. }), "{err}");
    assert!(err.to_string().contains("prot"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn test_chat_limits_default_to_20_per_user_and_120_per_tenant_and_must_be_positive() {
    let (s, _) = Settings::load(None, env(&[])).unwrap();
    assert_eq!(s.engine.chat_per_user_per_minute, 20);
    assert_eq!(s.engine.chat_per_tenant_per_minute, 120);
    let (s, warnings) = Settings::load(
        None,
        env(&[
            ("KONSTRUCT_CHAT_PER_USER_PER_MINUTE", "5"),
            ("KONSTRUCT_CHAT_PER_TENANT_PER_MINUTE", "50"),
        ]),
    )
    .unwrap();
    assert!(warnings.is_empty());
    assert_eq!(s.engine.chat_per_user_per_minute, 5);
    assert_eq!(s.engine.chat_per_tenant_per_minute, 50);
    let err =
        Settings::load(None, env(&[("KONSTRUCT_CHAT_PER_USER_PER_MINUTE", "0")])).unwrap_err();
    assert!(
        err.to_string()
            .contains("KONSTRUCT_CHAT_PER_USER_PER_MINUTE")
    );
}

#[test]
fn secrets_never_print() {
    let (s, _) = Settings::load(
        None,
        env(&[(
            "KONSTRUCT_DATABASE_URL",
            "postgres://app:hunter2@db/konstruct",
        )]),
    )
    .unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("redacted"));
}

/// One rule's probe: a value it refuses and one it accepts, as a variable's text and as the
/// TOML value of the setting's file key.
struct Case {
    var: &'static str,
    bad_env: &'static str,
    bad_toml: &'static str,
    good_env: &'static str,
    good_toml: &'static str,
}

const fn case(
    var: &'static str,
    bad: (&'static str, &'static str),
    good: (&'static str, &'static str),
) -> Case {
    Case {
        var,
        bad_env: bad.0,
        bad_toml: bad.1,
        good_env: good.0,
        good_toml: good.1,
    }
}

const EMPTY: (&str, &str) = ("", "\"\"");
const BLANK: (&str, &str) = ("  ", "\"  \"");
const ZERO: (&str, &str) = ("0", "0");
const FIVE: (&str, &str) = ("5", "5");
const KEYS_64_HEX: &str = "1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// Every rule of the settings table, probed from both sources.
const CASES: &[Case] = &[
    case("KONSTRUCT_WORKERS", ZERO, ("2", "2")),
    case(
        "KONSTRUCT_TRUSTED_PROXIES",
        ("10.0.0.0/33", "[\"10.0.0.0/33\"]"),
        ("10.0.0.0/8,192.0.2.1", "[\"10.0.0.0/8\", \"192.0.2.1\"]"),
    ),
    case(
        "KONSTRUCT_PUBLIC_URL",
        ("konstruct.example.com", "\"konstruct.example.com\""),
        (
            "https://konstruct.example.com",
            "\"https://konstruct.example.com\"",
        ),
    ),
    case("KONSTRUCT_LOGIN_FAILURES_PER_ACCOUNT_TOTAL", ZERO, FIVE),
    case("KONSTRUCT_LOGIN_FAILURES_PER_ACCOUNT", ZERO, FIVE),
    case("KONSTRUCT_LOGIN_FAILURES_PER_ADDRESS", ZERO, FIVE),
    case("KONSTRUCT_LOGIN_WINDOW_SECS", ZERO, FIVE),
    case("KONSTRUCT_SESSION_MAX_HOURS", ZERO, FIVE),
    case("KONSTRUCT_PASSWORD_HASH_CONCURRENCY", ZERO, FIVE),
    case("KONSTRUCT_JOBS_CONCURRENCY", ZERO, FIVE),
    case("KONSTRUCT_JOBS_LEASE_SECS", ("2", "2"), FIVE),
    case("KONSTRUCT_JOBS_POLL_SECS", ZERO, FIVE),
    case("KONSTRUCT_JOBS_RETRY_BASE_SECS", ZERO, FIVE),
    case("KONSTRUCT_JOBS_RETRY_MAX_SECS", ZERO, FIVE),
    case(
        "KONSTRUCT_DATA_DIR",
        ("  ", "\"  \""),
        ("/var/lib/konstruct", "\"/var/lib/konstruct\""),
    ),
    case(
        "KONSTRUCT_QDRANT_URL",
        ("qdrant.internal:6334", "\"qdrant.internal:6334\""),
        (
            "http://qdrant.internal:6334",
            "\"http://qdrant.internal:6334\"",
        ),
    ),
    case(
        "KONSTRUCT_EMBEDDING_MODEL",
        ("cohere:embed-v3", "\"cohere:embed-v3\""),
        (
            "openai:text-embedding-3-small",
            "\"openai:text-embedding-3-small\"",
        ),
    ),
    case(
        "KONSTRUCT_MAX_DOCUMENT_BYTES",
        ("12", "12"),
        ("1048576", "1048576"),
    ),
    case("KONSTRUCT_RELEVANCE_FLOOR", ("1.5", "1.5"), ("0.4", "0.4")),
    case("KONSTRUCT_KNOWLEDGE_PASSAGES", ZERO, FIVE),
    case("KONSTRUCT_TOOL_STEPS", ("51", "51"), FIVE),
    case(
        "KONSTRUCT_SMTP_URL",
        ("mail.example.com:25", "\"mail.example.com:25\""),
        (
            "smtp://user:pass@mail.example.com:587?tls=required",
            "\"smtp://user:pass@mail.example.com:587?tls=required\"",
        ),
    ),
    case(
        "KONSTRUCT_MAIL_FROM",
        ("not an address", "\"not an address\""),
        (
            "Acme <no-reply@acme.example>",
            "\"Acme <no-reply@acme.example>\"",
        ),
    ),
    case(
        "KONSTRUCT_SMTP_CA_FILE",
        BLANK,
        ("/etc/ssl/relay.pem", "\"/etc/ssl/relay.pem\""),
    ),
    case("KONSTRUCT_INVITATION_DAYS", ("31", "31"), FIVE),
    case("KONSTRUCT_INVITATIONS_PER_HOUR", ZERO, FIVE),
    case("KONSTRUCT_PASSWORD_RESET_MINUTES", ("4", "4"), FIVE),
    case("KONSTRUCT_PASSWORD_RESETS_PER_ADDRESS", ZERO, FIVE),
    case("KONSTRUCT_PASSWORD_RESETS_PER_ACCOUNT", ZERO, FIVE),
    case("KONSTRUCT_TURN_DEADLINE_SECS", ("4", "4"), ("30", "30")),
    case("KONSTRUCT_MEMORIES_RECALLED", ("21", "21"), FIVE),
    case(
        "KONSTRUCT_MEMORY_DELAY_SECS",
        ("99999999", "99999999"),
        FIVE,
    ),
    case(
        "KONSTRUCT_AUDIT_KEYS",
        ("1:not-hex-secret", "\"1:not-hex-secret\""),
        (
            "1:abababababababababababababababababababababababababababababababab",
            "\"1:abababababababababababababababababababababababababababababababab\"",
        ),
    ),
    case(
        "KONSTRUCT_SLACK_APP_ID",
        ("B0BOTNOTAPP", "\"B0BOTNOTAPP\""),
        ("A0123ABCD", "\"A0123ABCD\""),
    ),
    case(
        "KONSTRUCT_DATABASE_URL",
        BLANK,
        ("postgres://db/k", "\"postgres://db/k\""),
    ),
    case(
        "KONSTRUCT_DATABASE_OWNER_URL",
        EMPTY,
        ("postgres://db/k", "\"postgres://db/k\""),
    ),
    case(
        "KONSTRUCT_DATABASE_ADMIN_URL",
        EMPTY,
        ("postgres://db/p", "\"postgres://db/p\""),
    ),
    case("KONSTRUCT_DATABASE_MAX_CONNECTIONS", ZERO, FIVE),
    case(
        "KONSTRUCT_REDIS_URL",
        EMPTY,
        ("redis://cache", "\"redis://cache\""),
    ),
    case("KONSTRUCT_REDIS_KEY_PREFIX", BLANK, ("k2", "\"k2\"")),
    case(
        "KONSTRUCT_JWT_SECRET",
        ("too-short-jwt-secret", "\"too-short-jwt-secret\""),
        (
            "0123456789abcdef0123456789abcdef",
            "\"0123456789abcdef0123456789abcdef\"",
        ),
    ),
    case(
        "KONSTRUCT_JWT_SECRET",
        EMPTY,
        (
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
        ),
    ),
    case("KONSTRUCT_TOKEN_MINUTES", ZERO, FIVE),
    case(
        "KONSTRUCT_ADMIN_EMAIL",
        EMPTY,
        ("a@example.com", "\"a@example.com\""),
    ),
    case(
        "KONSTRUCT_ADMIN_PASSWORD",
        BLANK,
        ("long-password", "\"long-password\""),
    ),
    case(
        "KONSTRUCT_ANTHROPIC_API_KEY",
        EMPTY,
        ("sk-ant-1", "\"sk-ant-1\""),
    ),
    case(
        "KONSTRUCT_ANTHROPIC_BASE_URL",
        EMPTY,
        ("http://a", "\"http://a\""),
    ),
    case("KONSTRUCT_ANTHROPIC_MODEL", EMPTY, ("m", "\"m\"")),
    case("KONSTRUCT_OPENAI_API_KEY", EMPTY, ("sk-1", "\"sk-1\"")),
    case(
        "KONSTRUCT_OPENAI_BASE_URL",
        BLANK,
        ("http://o", "\"http://o\""),
    ),
    case("KONSTRUCT_OPENAI_MODEL", EMPTY, ("m", "\"m\"")),
    case("KONSTRUCT_OLLAMA_URL", EMPTY, ("http://l", "\"http://l\"")),
    case("KONSTRUCT_OLLAMA_MODEL", EMPTY, ("m", "\"m\"")),
    case("KONSTRUCT_RATE_PER_MINUTE", ZERO, FIVE),
    case("KONSTRUCT_RATE_BURST", ZERO, FIVE),
    case("KONSTRUCT_CONNECTION_RATE_PER_MINUTE", ZERO, FIVE),
    case("KONSTRUCT_CONNECTION_RATE_BURST", ZERO, FIVE),
    case("KONSTRUCT_CONVERSATION_IDLE_SECS", ZERO, FIVE),
    case("KONSTRUCT_PARTITION_LEASE_SECS", ("2", "2"), ("3", "3")),
    case("KONSTRUCT_RETRY_HORIZON_SECS", ZERO, FIVE),
    case("KONSTRUCT_RETRY_MAX_DELAY_SECS", ZERO, FIVE),
    case("KONSTRUCT_CONVERSATION_STATE_TTL_SECS", ZERO, FIVE),
    case("KONSTRUCT_DEDUPE_TTL_SECS", ZERO, FIVE),
    case("KONSTRUCT_DEAD_LETTER_TTL_SECS", ZERO, FIVE),
    case("KONSTRUCT_ENGINE_MAX_IN_FLIGHT", ZERO, FIVE),
    case("KONSTRUCT_LLM_MAX_IN_FLIGHT", ZERO, FIVE),
    case("KONSTRUCT_CHAT_PER_USER_PER_MINUTE", ZERO, FIVE),
    case("KONSTRUCT_CHAT_PER_TENANT_PER_MINUTE", ZERO, FIVE),
    case("KONSTRUCT_SLACK_SIGNING_SECRET", EMPTY, ("s", "\"s\"")),
    case("KONSTRUCT_WHATSAPP_APP_SECRET", EMPTY, ("s", "\"s\"")),
    case(
        "KONSTRUCT_WHATSAPP_VERIFY_TOKEN",
        ("too-short", "\"too-short\""),
        (
            "a-long-enough-verify-token",
            "\"a-long-enough-verify-token\"",
        ),
    ),
    case(
        "KONSTRUCT_WHATSAPP_GRAPH_URL",
        ("ftp://graph.example", "\"ftp://graph.example\""),
        ("https://graph.example", "\"https://graph.example\""),
    ),
    case(
        "KONSTRUCT_WHATSAPP_GRAPH_VERSION",
        ("latest", "\"latest\""),
        ("v22.0", "\"v22.0\""),
    ),
    case("KONSTRUCT_WHATSAPP_MESSAGES_PER_SECOND", ZERO, FIVE),
    case("KONSTRUCT_SLACK_CLIENT_ID", EMPTY, ("c", "\"c\"")),
    case("KONSTRUCT_SLACK_CLIENT_SECRET", BLANK, ("c", "\"c\"")),
    case(
        "KONSTRUCT_SLACK_API_URL",
        ("ftp://slack.example/api", "\"ftp://slack.example/api\""),
        ("https://slack.example/api", "\"https://slack.example/api\""),
    ),
    case(
        "KONSTRUCT_SLACK_API_URL",
        EMPTY,
        ("http://s", "\"http://s\""),
    ),
    case(
        "KONSTRUCT_ENCRYPTION_KEYS",
        ("1:not-hex-key-material", "\"1:not-hex-key-material\""),
        (
            KEYS_64_HEX,
            "\"1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"",
        ),
    ),
    case(
        "KONSTRUCT_ENCRYPTION_KEYS",
        EMPTY,
        (
            KEYS_64_HEX,
            "\"1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"",
        ),
    ),
    case("KONSTRUCT_LOG", EMPTY, ("debug", "\"debug\"")),
    case(
        "KONSTRUCT_OUTBOUND_ALLOW",
        (
            "http://files.internal/path",
            "[\"http://files.internal/path\"]",
        ),
        (
            "files.internal:8443, 127.0.0.1",
            "[\"files.internal:8443\", \"127.0.0.1\"]",
        ),
    ),
    case("KONSTRUCT_OUTBOUND_TIMEOUT_SECS", ZERO, FIVE),
    case("KONSTRUCT_OUTBOUND_CONNECT_TIMEOUT_SECS", ZERO, FIVE),
    case("KONSTRUCT_OUTBOUND_MAX_BYTES", ZERO, FIVE),
    case("KONSTRUCT_OUTBOUND_MAX_REQUEST_BYTES", ZERO, FIVE),
    case("KONSTRUCT_OUTBOUND_MAX_REDIRECTS", ("21", "21"), ZERO),
];

fn setting(var: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|s| s.var == var)
        .unwrap_or_else(|| panic!("{var} is not in the settings table"))
}

/// A file that sets only `key` (`section.field`) to `value`.
fn file_setting(key: &str, value: &str) -> String {
    let (section, field) = key.split_once('.').unwrap();
    format!("[{section}]\n{field} = {value}\n")
}

fn from_file(text: &str) -> Result<Settings, ConfigError> {
    Settings::load_text(Some((Path::new("konstruct.toml"), text)), env(&[])).map(|(s, _)| s)
}

fn from_env(var: &str, value: &str) -> Result<Settings, ConfigError> {
    Settings::load_text(None, env(&[(var, value)])).map(|(s, _)| s)
}

#[test]
fn every_rule_refuses_a_bad_value_from_the_environment_and_the_file_alike() {
    for case in CASES {
        let key = setting(case.var).key;
        let env_err = from_env(case.var, case.bad_env).unwrap_err();
        let file_err = from_file(&file_setting(key, case.bad_toml)).unwrap_err();
        assert!(
            matches!(env_err, ConfigError::Invalid { .. }),
            "{}: {env_err}",
            case.var
        );
        let text = env_err.to_string();
        assert_eq!(text, file_err.to_string(), "{}: same refusal", case.var);
        assert!(
            text.starts_with(&format!("{} / {key} ", case.var)),
            "names the variable and the key: {text}"
        );
        if case.bad_env.trim().len() >= 4 {
            assert!(!text.contains(case.bad_env), "never the value: {text}");
        }

        from_env(case.var, case.good_env)
            .unwrap_or_else(|e| panic!("{} accepted from the environment: {e}", case.var));
        from_file(&file_setting(key, case.good_toml))
            .unwrap_or_else(|e| panic!("{key} accepted from the file: {e}"));
    }
}

#[test]
fn every_rule_of_the_table_has_a_case() {
    let with_rule: std::collections::BTreeSet<&str> = SETTINGS
        .iter()
        .filter(|s| s.rule.is_some())
        .map(|s| s.var)
        .collect();
    let probed: std::collections::BTreeSet<&str> = CASES.iter().map(|c| c.var).collect();
    assert_eq!(
        with_rule, probed,
        "add a case for each new rule (or drop a stale one)"
    );
}

#[test]
fn every_file_key_of_the_table_is_a_real_key() {
    // The defaults serialised key by key would need `Serialize`; instead each key is set to a
    // value of a wrong type, and the file must be refused for that type, not as unknown.
    for setting in SETTINGS {
        let err = from_file(&file_setting(setting.key, "{ nested = 1 }")).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("unknown field"), "{}: {text}", setting.key);
        assert!(text.contains(setting.key), "names {}: {text}", setting.key);
    }
}

#[test]
fn values_of_the_wrong_type_in_the_file_name_the_key_but_not_the_value() {
    let err = from_file("[auth]\njwt_secret = 31415926535897932384626\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("line 2 (auth.jwt_secret)"), "{text}");
    assert!(!text.contains("31415926"), "{text}");
    let err = from_file("[server]\nport = \"hunter2-port\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("server.port"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let err = from_file("[log]\nformat = \"xml-secret\"\n").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("log.format") && text.contains("pretty"),
        "{text}"
    );
    assert!(!text.contains("xml-secret"), "{text}");
}

#[test]
fn environment_parse_errors_name_the_variable_and_the_key() {
    let err = from_env("KONSTRUCT_OUTBOUND_MAX_BYTES", "lots").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ConfigError::InvalidEnv { .. }), "{text}");
    assert!(text.contains("KONSTRUCT_OUTBOUND_MAX_BYTES"), "{text}");
    assert!(text.contains("outbound.max_bytes"), "{text}");
    assert!(!text.contains("lots"), "{text}");
}

#[test]
fn the_environment_is_validated_after_the_file_so_it_can_repair_a_bad_file_value() {
    // The rule applies to the final value: a file's bad value overridden by a good variable
    // is fine, and a good file value overridden by a bad variable is not.
    let file = "[engine]\npartition_lease_secs = 1\n";
    let (s, _) = Settings::load_text(
        Some((Path::new("k.toml"), file)),
        env(&[("KONSTRUCT_PARTITION_LEASE_SECS", "4")]),
    )
    .unwrap();
    assert_eq!(s.engine.partition_lease_secs, 4);
    let err = Settings::load_text(
        Some((Path::new("k.toml"), "[engine]\npartition_lease_secs = 4\n")),
        env(&[("KONSTRUCT_PARTITION_LEASE_SECS", "1")]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("must be at least 3"), "{err}");
}

#[test]
fn the_slack_api_url_loses_its_trailing_slash_from_either_source() {
    let s = from_env("KONSTRUCT_SLACK_API_URL", "http://fake/api/").unwrap();
    assert_eq!(s.slack.api_base_url, "http://fake/api");
    let s = from_file("[slack]\napi_base_url = \"http://fake/api//\"\n").unwrap();
    assert_eq!(s.slack.api_base_url, "http://fake/api");
}

#[test]
fn outbound_settings_default_and_read_a_comma_list_of_allowed_hosts() {
    let (s, _) = Settings::load(None, env(&[])).unwrap();
    assert!(s.outbound.allow.is_empty());
    assert_eq!(s.outbound.timeout_secs, 10);
    assert_eq!(s.outbound.max_bytes, 10 * 1024 * 1024);
    assert_eq!(s.outbound.max_redirects, 5);
    let s = from_env(
        "KONSTRUCT_OUTBOUND_ALLOW",
        " files.internal:8443 ,[::1]:9000,, ",
    )
    .unwrap();
    assert_eq!(s.outbound.allow, ["files.internal:8443", "[::1]:9000"]);
}
