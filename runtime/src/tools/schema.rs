//! Argument schemas: a tool's JSON Schema compiled with the `jsonschema` crate (draft 2020-12
//! unless the schema names another; references to other documents are never fetched; patterns
//! on a linear-time regex engine), the
//! problems with a tenant's schema as field errors, and the problems with a call's arguments
//! as the model and the operator read them.

use serde_json::Value;

/// The largest schema a tool may have, as JSON text.
pub const MAX_SCHEMA_BYTES: usize = 16 * 1024;

/// A problem with a schema, at a JSON Pointer inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaProblem {
    /// `""` for the schema itself, else e.g. `/properties/order_id/type`.
    pub pointer: String,
    pub message: String,
}

/// A problem with a call's arguments, at a JSON Pointer inside them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentProblem {
    pub pointer: String,
    pub message: String,
}

impl std::fmt::Display for ArgumentProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pointer.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.pointer, self.message)
        }
    }
}

/// Whether `name` may be a tool's name (what OpenAI and Anthropic accept for a function).
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Compiles `schema`, which must be an object schema (`"type": "object"`) that is valid JSON
/// Schema and small enough.
pub fn compile(schema: &Value) -> Result<jsonschema::Validator, Vec<SchemaProblem>> {
    let problem = |pointer: &str, message: &str| {
        vec![SchemaProblem {
            pointer: pointer.into(),
            message: message.into(),
        }]
    };
    if !schema.is_object() {
        return Err(problem("", "must be a JSON object (a JSON Schema)"));
    }
    if schema.to_string().len() > MAX_SCHEMA_BYTES {
        return Err(problem(
            "",
            &format!("is larger than {MAX_SCHEMA_BYTES} bytes"),
        ));
    }
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err(problem(
            "/type",
            "must be \"object\": a tool's arguments are an object",
        ));
    }
    // `pattern`s run on the `regex` engine (linear time, size-capped): a tenant's schema cannot
    // make a check backtrack for seconds.
    jsonschema::options()
        .with_pattern_options(
            jsonschema::PatternOptions::regex()
                .size_limit(1 << 20)
                .dfa_size_limit(1 << 20),
        )
        .build(schema)
        .map_err(|e| {
            vec![SchemaProblem {
                pointer: e.instance_path().as_str().to_string(),
                message: e.to_string(),
            }]
        })
}

/// The problems with `arguments` under `validator`, at most ten, each once.
pub fn check(
    validator: &jsonschema::Validator,
    arguments: &Value,
) -> Result<(), Vec<ArgumentProblem>> {
    let mut problems: Vec<ArgumentProblem> = Vec::new();
    for e in validator.iter_errors(arguments) {
        let p = ArgumentProblem {
            pointer: e.instance_path().as_str().to_string(),
            message: e.to_string(),
        };
        if !problems.contains(&p) {
            problems.push(p);
        }
        if problems.len() == 10 {
            break;
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The JSON Schema of a Rust type (the built-in tools' arguments), from its `utoipa` schema:
/// draft 2020-12 as OpenAPI 3.1 writes it.
pub fn of<T: utoipa::PartialSchema>() -> Value {
    serde_json::to_value(T::schema()).unwrap_or_else(|_| serde_json::json!({"type": "object"}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_what_the_providers_accept() {
        assert!(is_valid_name("order_status"));
        assert!(is_valid_name("Order-Status2"));
        for bad in ["", "order status", "ordér", &"x".repeat(65), "a.b"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_schema_must_be_a_valid_object_schema() {
        assert!(compile(&json!({"type": "object"})).is_ok());
        assert_eq!(compile(&json!([1])).unwrap_err()[0].pointer, "");
        assert_eq!(
            compile(&json!({"type": "string"})).unwrap_err()[0].pointer,
            "/type"
        );
        let bad =
            compile(&json!({"type": "object", "properties": {"id": {"type": 12}}})).unwrap_err();
        assert_eq!(bad[0].pointer, "/properties/id/type", "{bad:?}");
        let big = json!({"type": "object", "description": "x".repeat(MAX_SCHEMA_BYTES)});
        assert!(compile(&big).is_err());
    }

    #[test]
    fn a_reference_to_another_document_is_refused_not_fetched() {
        let schema =
            json!({"type": "object", "properties": {"a": {"$ref": "http://169.254.169.254/x"}}});
        assert!(compile(&schema).is_err());
    }

    #[test]
    fn argument_problems_point_at_the_argument() {
        let v = compile(&json!({
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
            "additionalProperties": false
        }))
        .unwrap();
        assert!(check(&v, &json!({"order_id": "1234"})).is_ok());
        let problems = check(&v, &json!({"order_id": 1234})).unwrap_err();
        assert_eq!(problems[0].pointer, "/order_id");
        assert!(check(&v, &json!({})).is_err());
        assert!(check(&v, &json!({"order_id": "1", "extra": true})).is_err());
    }

    #[test]
    fn a_pattern_that_would_backtrack_runs_in_linear_time() {
        let v = compile(&json!({
            "type": "object",
            "properties": {"a": {"type": "string", "pattern": "^(a+)+$"}}
        }))
        .unwrap();
        // On a backtracking engine this input would not finish (2^50000 paths); here it does.
        let evil = format!("{}!", "a".repeat(50_000));
        assert!(check(&v, &json!({"a": evil})).is_err());
    }
}
