//! The HTTP API: one module per resource, assembled into an axum router with its OpenAPI document.

pub mod batches;
pub mod cursor;
pub mod estimators;
pub mod extract;
pub mod gates;
pub mod history;
pub mod ingest;
pub mod jobs;
pub mod keys;
pub mod labels;
pub mod models;
pub mod monitors;
pub mod ops;
pub mod overload;
pub mod paced;
pub mod retention;
pub mod samples;
pub mod state;
pub mod strict;
pub mod throttle;
pub mod views;

pub use extract::{query_name, NameString, PageQuery, UnitQuery};
pub use state::{AppState, Caches, Limits};

use axum::extract::DefaultBodyLimit;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use crate::domain::unit::Unit;
use crate::error::Problem;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "infoaudit",
        description = "Audit machine-learning models with information theory. Upload batches of \
            predictions and true labels per model version; estimator jobs run on a durable \
            Postgres-backed queue and their results are kept per version.\n\n\
            Information values are in **bits** unless `?unit=nats` is given. Errors are RFC 9457 \
            `application/problem+json` documents; field errors carry a JSON Pointer into the body.\n\n\
            **Metrics** (history, version summaries, gate and monitor rules) are addressed as \
            `estimator[.statistic][{key=value}]`: `semantic_mi`, `shannon_mi.nmi`, or one segment \
            value's series `semantic_mi{region=eu}`, `shannon_mi.nmi{device=ios}` (`key`: a letter \
            then letters, digits or `_`, at most 32; `value`: 1 to 64 characters without \
            `{ } = , \"` or control characters; `__other__` names the values beyond the upload's \
            cap). Batches carry segments as `segments: {key: [value per sample]}` (NDJSON \
            `segments: {key: value}` per row, CSV and Arrow `segment_<key>` columns); every \
            estimator then also reports its value per segment value with the decomposition \
            Σ_s P(s) I_s, I(Y;S) and each segment's contribution (`segments` of a result), and \
            `/compare` ranks the segments by their contribution to the change.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "batches", description = "Upload batches and read them back"),
        (name = "jobs", description = "Estimator jobs on the queue"),
        (name = "models", description = "Models, versions and their latest information"),
        (name = "estimators", description = "The estimator catalog"),
        (name = "gates", description = "Aliases, gate policies and decisions, comparisons"),
        (name = "monitors", description = "Monitors, incidents and webhook deliveries"),
        (name = "history", description = "Information over time and against business KPIs"),
        (name = "keys", description = "API keys (admin)"),
        (name = "operations", description = "Health and readiness"),
    ),
    components(schemas(Problem, crate::error::FieldError, NameString, samples::ExportFormat)),
    modifiers(&BearerAuth),
    security((), ("bearer" = []))
)]
struct ApiDoc;

/// API keys travel as `Authorization: Bearer <key>`.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ia_<prefix>_<secret>")
                    .build(),
            ),
        );
    }
}

/// The documented API routes (without state), for the server and for the OpenAPI document.
fn api_routes(limits: Limits) -> OpenApiRouter<AppState> {
    let upload = OpenApiRouter::new()
        .routes(utoipa_axum::routes!(batches::upload))
        .routes(utoipa_axum::routes!(labels::post_labels))
        .layer(DefaultBodyLimit::max(limits.max_upload_bytes));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(upload)
        .routes(utoipa_axum::routes!(
            batches::get_batch,
            batches::delete_batch
        ))
        .routes(utoipa_axum::routes!(batches::get_batch_data))
        .routes(utoipa_axum::routes!(samples::export_samples))
        .routes(utoipa_axum::routes!(batches::add_jobs))
        .routes(utoipa_axum::routes!(labels::release_batch))
        .routes(utoipa_axum::routes!(jobs::get_job))
        .routes(utoipa_axum::routes!(jobs::cancel_job))
        .routes(utoipa_axum::routes!(jobs::list_jobs))
        .routes(utoipa_axum::routes!(models::list_models))
        .routes(utoipa_axum::routes!(models::get_model))
        .routes(utoipa_axum::routes!(models::list_versions))
        .routes(utoipa_axum::routes!(models::get_version))
        .routes(utoipa_axum::routes!(
            retention::put_retention,
            retention::get_retention
        ))
        .routes(utoipa_axum::routes!(estimators::list_estimators))
        .routes(utoipa_axum::routes!(gates::set_alias, gates::delete_alias))
        .routes(utoipa_axum::routes!(gates::put_policy, gates::get_policy))
        .routes(utoipa_axum::routes!(gates::evaluate))
        .routes(utoipa_axum::routes!(gates::get_decision))
        .routes(utoipa_axum::routes!(gates::list_decisions))
        .routes(utoipa_axum::routes!(gates::compare))
        .routes(utoipa_axum::routes!(
            monitors::put_monitor,
            monitors::get_monitor,
            monitors::delete_monitor
        ))
        .routes(utoipa_axum::routes!(monitors::list_monitors))
        .routes(utoipa_axum::routes!(monitors::evaluate_monitor))
        .routes(utoipa_axum::routes!(monitors::list_incidents))
        .routes(utoipa_axum::routes!(monitors::list_deliveries))
        .routes(utoipa_axum::routes!(monitors::redeliver))
        .routes(utoipa_axum::routes!(history::history))
        .routes(utoipa_axum::routes!(history::kpi_correlation))
        .routes(utoipa_axum::routes!(keys::create_key, keys::list_keys))
        .routes(utoipa_axum::routes!(keys::revoke_key))
        .routes(utoipa_axum::routes!(ops::livez))
        .routes(utoipa_axum::routes!(ops::readyz))
        .routes(utoipa_axum::routes!(ops::metrics))
}

/// The documented API routes and their OpenAPI document (constraints and common responses
/// stated), for the router that `crate::app` assembles.
pub fn routes(limits: Limits) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, mut doc) = api_routes(limits).split_for_parts();
    document_common_responses(&mut doc);
    document_constraints(&mut doc);
    (api, doc)
}

/// The OpenAPI document of this build.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_routes(Limits::default()).split_for_parts().1;
    document_common_responses(&mut doc);
    document_constraints(&mut doc);
    doc
}

/// A response that flattens a request schema (a stored monitor is its definition plus `model`,
/// `name`, `version`…) must not inherit the request's ban on other fields: each `allOf` member
/// that refers to a closed object schema is replaced by a copy that allows more fields.
fn open_flattened(components: &mut utoipa::openapi::Components) {
    use utoipa::openapi::schema::{AdditionalProperties, Schema};
    use utoipa::openapi::RefOr;
    let closed: std::collections::HashMap<String, RefOr<Schema>> = components
        .schemas
        .iter()
        .filter_map(|(name, s)| match s {
            RefOr::T(Schema::Object(o))
                if matches!(
                    o.additional_properties.as_deref(),
                    Some(AdditionalProperties::FreeForm(false))
                ) =>
            {
                let mut open = o.clone();
                open.additional_properties = None;
                Some((
                    format!("#/components/schemas/{name}"),
                    RefOr::T(Schema::Object(open)),
                ))
            }
            _ => None,
        })
        .collect();
    for s in components.schemas.values_mut() {
        if let RefOr::T(Schema::AllOf(all)) = s {
            for item in all.items.iter_mut() {
                if let RefOr::Ref(r) = item {
                    if let Some(open) = closed.get(&r.ref_location) {
                        *item = open.clone();
                    }
                }
            }
        }
    }
}

/// Cross-field rules the server enforces, stated in the schemas so that a client generated from
/// the document (or a fuzzer) builds only requests the server accepts: a gate request names a
/// stored policy or gives rules, not both; a rule has a threshold, or a baseline with exactly one
/// of max_regression and min_improvement (or both kinds of bound); a change gives absolute,
/// relative or both.
fn document_constraints(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{
        AllOfBuilder, AnyOfBuilder, ObjectBuilder, OneOfBuilder, Schema, Type,
    };
    use utoipa::openapi::RefOr;
    let typed = |t: Type| -> RefOr<Schema> { ObjectBuilder::new().schema_type(t).build().into() };
    let shape = |required: &[&str], props: &[(&str, Type)]| -> RefOr<Schema> {
        let mut b = ObjectBuilder::new();
        for r in required {
            b = b.required(*r);
        }
        for (name, t) in props {
            b = b.property(*name, typed(t.clone()));
        }
        b.build().into()
    };
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    open_flattened(components);
    let mut compose = |name: &str, extras: Vec<RefOr<Schema>>| {
        if let Some(base) = components.schemas.remove(name) {
            let all = extras
                .into_iter()
                .fold(AllOfBuilder::new().item(base), |b, e| b.item(e))
                .build();
            components
                .schemas
                .insert(name.to_string(), Schema::AllOf(all).into());
        }
    };
    compose(
        "GateRequest",
        vec![RefOr::T(Schema::OneOf(
            OneOfBuilder::new()
                .item(shape(
                    &["gate"],
                    &[("gate", Type::String), ("rules", Type::Null)],
                ))
                .item(shape(
                    &["rules"],
                    &[("rules", Type::Array), ("gate", Type::Null)],
                ))
                .build(),
        ))],
    );
    compose(
        "Rule",
        vec![RefOr::T(Schema::OneOf(
            OneOfBuilder::new()
                .item(shape(
                    &["threshold"],
                    &[
                        ("threshold", Type::Number),
                        ("baseline", Type::Null),
                        ("max_regression", Type::Null),
                        ("min_improvement", Type::Null),
                    ],
                ))
                .item(shape(
                    &["baseline", "max_regression"],
                    &[
                        ("baseline", Type::String),
                        ("max_regression", Type::Object),
                        ("min_improvement", Type::Null),
                    ],
                ))
                .item(shape(
                    &["baseline", "min_improvement"],
                    &[
                        ("baseline", Type::String),
                        ("min_improvement", Type::Object),
                        ("max_regression", Type::Null),
                    ],
                ))
                .build(),
        ))],
    );
    // A monitor: exactly one target kind; a stored policy or rules; a window of batches or hours;
    // some trigger that can fire (a schedule, results, or an alias that moves).
    let name = || -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(crate::domain::names::PATTERN))
            .build()
            .into()
    };
    let nulls = |b: ObjectBuilder, props: &[&str]| {
        props
            .iter()
            .fold(b, |b, p| b.property(*p, typed(Type::Null)))
    };
    compose(
        "Target",
        vec![RefOr::T(Schema::OneOf(
            OneOfBuilder::new()
                .item(nulls(
                    ObjectBuilder::new()
                        .required("alias")
                        .property("alias", name()),
                    &["version", "latest"],
                ))
                .item(nulls(
                    ObjectBuilder::new()
                        .required("version")
                        .property("version", name()),
                    &["alias", "latest"],
                ))
                .item(nulls(
                    ObjectBuilder::new().required("latest").property(
                        "latest",
                        ObjectBuilder::new()
                            .schema_type(Type::Boolean)
                            .enum_values(Some([true])),
                    ),
                    &["alias", "version"],
                ))
                .build(),
        ))],
    );
    compose(
        "Window",
        vec![RefOr::T(Schema::AnyOf(
            AnyOfBuilder::new()
                .item(nulls(ObjectBuilder::new(), &["batches"]).build())
                .item(nulls(ObjectBuilder::new(), &["hours"]).build())
                .build(),
        ))],
    );
    let object = |props: Vec<(&str, RefOr<Schema>)>, required: &[&str]| -> RefOr<Schema> {
        let mut b = ObjectBuilder::new();
        for r in required {
            b = b.required(*r);
        }
        for (p, v) in props {
            b = b.property(p, v);
        }
        b.build().into()
    };
    let constant = |v: bool| -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Boolean)
            .enum_values(Some([v]))
            .build()
            .into()
    };
    let gate_or_rules = RefOr::T(Schema::OneOf(
        OneOfBuilder::new()
            .item(object(
                vec![("gate", name()), ("rules", typed(Type::Null))],
                &["gate"],
            ))
            .item(object(
                vec![
                    (
                        "rules",
                        utoipa::openapi::schema::ArrayBuilder::new()
                            .min_items(Some(1))
                            .build()
                            .into(),
                    ),
                    ("gate", typed(Type::Null)),
                ],
                &["rules"],
            ))
            .build(),
    ));
    let some_trigger = RefOr::T(Schema::AnyOf(
        AnyOfBuilder::new()
            // on_result is true (its default).
            .item(object(
                vec![("triggers", object(vec![("on_result", constant(true))], &[]))],
                &[],
            ))
            // A schedule.
            .item(object(
                vec![(
                    "triggers",
                    object(vec![("every", typed(Type::String))], &["every"]),
                )],
                &["triggers"],
            ))
            // An alias target whose moves trigger (on_alias_change defaults to true).
            .item(object(
                vec![
                    ("target", object(vec![("alias", name())], &["alias"])),
                    (
                        "triggers",
                        object(vec![("on_alias_change", constant(true))], &[]),
                    ),
                ],
                &[],
            ))
            .build(),
    ));
    compose("MonitorSpec", vec![gate_or_rules, some_trigger]);
    compose(
        "Change",
        vec![RefOr::T(Schema::AnyOf(
            AnyOfBuilder::new()
                .item(shape(&["absolute"], &[("absolute", Type::Number)]))
                .item(shape(&["relative"], &[("relative", Type::Number)]))
                .build(),
        ))],
    );
    // Sample ids and segments: the limits validation applies, stated in the document.
    use crate::domain::segments as seg;
    let id_items = serde_json::json!({"type": "string", "pattern": seg::ID_PATTERN});
    for (schema, field) in [("BatchRequest", "ids"), ("LabelsRequest", "ids")] {
        patch_schema(components, schema, |v| {
            v["properties"][field]["items"] = id_items.clone();
            v["properties"][field]["uniqueItems"] = serde_json::json!(true);
        });
    }
    // A label: a class index or name (multiclass), an indicator row or a list of label names
    // (multilabel). Which names and how many indices is the batch's, stated in the description.
    let label = serde_json::json!({"anyOf": [
        {"type": "integer", "minimum": 0},
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"anyOf": [
            {"type": "integer", "minimum": 0, "maximum": 1},
            {"type": "string", "minLength": 1}
        ]}}
    ]});
    for schema in ["BatchRequest", "LabelsRequest"] {
        patch_schema(components, schema, |v| {
            v["properties"]["labels"]["items"] = label.clone();
        });
    }
    // Labels by id: at least one, at most MAX_LABELS, one label per id.
    patch_schema(components, "LabelsRequest", |v| {
        for field in ["ids", "labels"] {
            v["properties"][field]["minItems"] = serde_json::json!(1);
            v["properties"][field]["maxItems"] =
                serde_json::json!(crate::domain::labels::MAX_LABELS);
        }
    });
    patch_schema(components, "BatchRequest", |v| {
        let s = &mut v["properties"]["segments"];
        s["propertyNames"] = serde_json::json!({"type": "string", "pattern": seg::KEY_PATTERN});
        s["maxProperties"] = serde_json::json!(seg::MAX_KEYS);
        s["additionalProperties"]["items"] = serde_json::json!({"type": "string", "pattern": seg::VALUE_PATTERN, "not": {"const": seg::OTHER}});
    });
    // Estimator ids: the catalog's (parameters and applicability to the batch's task are checked
    // by the server and listed by GET /v1/estimators).
    let ids = crate::domain::estimators::Kind::ALL
        .iter()
        .map(|k| k.id())
        .collect::<Vec<_>>()
        .join("|");
    let id = || -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("^({ids})$")))
            .build()
            .into()
    };
    components.schemas.insert(
        "EstimatorRef".to_string(),
        Schema::OneOf(
            OneOfBuilder::new()
                .description(Some(
                    "An estimator named in a request: its id alone (default parameters), or its id \
                     with parameters (unknown parameters are rejected; see GET /v1/estimators).",
                ))
                .item(id())
                .item(object(
                    vec![("id", id()), ("params", typed(Type::Object))],
                    &["id"],
                ))
                .build(),
        )
        .into(),
    );
}

/// Edit a component schema as JSON (for keywords the schema builders do not offer).
fn patch_schema(
    components: &mut utoipa::openapi::Components,
    name: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) {
    let Some(schema) = components.schemas.get(name) else {
        return;
    };
    let Ok(mut v) = serde_json::to_value(schema) else {
        return;
    };
    edit(&mut v);
    if let Ok(s) = serde_json::from_value(v) {
        components.schemas.insert(name.to_string(), s);
    }
}

/// Responses every operation of a kind can give, whatever its handler says: 401/403 from the
/// key check on `/v1/` routes, 400 from malformed path or query parameters, 404 for unknown ids,
/// 413/415 for bodies, 422 for invalid names in the path.
fn document_common_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            // Names in the path: say what the service accepts, so clients (and fuzzers) know.
            for p in op.parameters.iter_mut().flatten() {
                let name_in_path = p.parameter_in == ParameterIn::Path
                    && ["model", "version", "gate", "alias", "name"].contains(&p.name.as_str());
                // Query parameters that name a model, a monitor, or a version or alias.
                let name_in_query = p.parameter_in == ParameterIn::Query
                    && ["model", "monitor", "version", "baseline", "candidate"]
                        .contains(&p.name.as_str());
                if name_in_path || name_in_query {
                    p.schema = Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some(crate::domain::names::PATTERN))
                            .min_length(Some(1))
                            .max_length(Some(128))
                            .build()
                            .into(),
                    );
                }
            }
            // Idempotency keys: 1–255 visible ASCII characters and inner spaces (what the check
            // in `batches` accepts once HTTP has trimmed the value).
            for p in op.parameters.iter_mut().flatten() {
                if p.parameter_in == ParameterIn::Header && p.name == "Idempotency-Key" {
                    p.schema = Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some("^[!-~]([ -~]{0,253}[!-~])?$"))
                            .build()
                            .into(),
                    );
                }
            }
            // Cursors: the exact strings that are positions (see `cursor`).
            for p in op.parameters.iter_mut().flatten() {
                if p.parameter_in == ParameterIn::Query && p.name == "cursor" {
                    let pattern = if path == "/v1/models" {
                        cursor::name_pattern()
                    } else {
                        cursor::TIME_PATTERN.to_string()
                    };
                    p.schema = Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some(pattern))
                            .build()
                            .into(),
                    );
                }
            }
            let params = op.parameters.as_deref().unwrap_or_default();
            let has_path = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
            let has_query = params.iter().any(|p| p.parameter_in == ParameterIn::Query);
            let has_body = op.request_body.is_some();
            let named = params.iter().any(|p| {
                p.parameter_in == ParameterIn::Path
                    && ["model", "version", "gate", "alias", "name"].contains(&p.name.as_str())
            });
            let mut add = |code: &str, description: &str, when: bool| {
                if when && !op.responses.responses.contains_key(code) {
                    let mut r = problem(description);
                    if code == "429" || code == "503" {
                        r.headers.insert(
                            "Retry-After".to_string(),
                            utoipa::openapi::HeaderBuilder::new()
                                .schema(
                                    ObjectBuilder::new()
                                        .schema_type(Type::Integer)
                                        .minimum(Some(1))
                                        .build(),
                                )
                                .description(Some("Seconds to wait before retrying"))
                                .build(),
                        );
                    }
                    op.responses.responses.insert(code.to_string(), r.into());
                }
            };
            let v1 = path.starts_with("/v1/");
            add(
                "400",
                "Malformed parameters or body",
                has_path || has_query || has_body,
            );
            add("401", "No valid API key (when keys are in use)", v1);
            add("403", "The key lacks the scope or the model", v1);
            add("404", "Not found", has_path);
            add("413", "Body over the limit", has_body);
            add("415", "Unsupported media type", has_body);
            add("422", "Invalid name or body", named || has_body);
            add(
                "429",
                "The key's rate limit is exceeded (when --rate-limit is set); see Retry-After",
                v1,
            );
            add(
                "503",
                "The database cannot be reached (or, on uploads, the queue is over its ceiling); nothing was changed; see Retry-After",
                v1 || path == "/readyz" || path == "/metrics",
            );
        }
    }
}
