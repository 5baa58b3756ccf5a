//! What the API document says of every route at once: who it is, how callers authenticate, and
//! the request-level errors every POST route may answer. The routes themselves are documented on
//! their handlers, and their bodies by the wire types.

use pseudonym_client::wire::ErrorBody;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa::{Modify, PartialSchema, ToSchema};

/// The statuses of [`crate::error::ApiError`] a POST route may answer, each with an
/// [`ErrorBody`] whose `code` says which refusal it is.
const REFUSALS: [(&str, &str); 7] = [
    ("400", "bad_json or invalid_argument"),
    ("401", "unauthorized: no API key, or an unknown one"),
    (
        "403",
        "forbidden: the key may not do this operation or use this domain",
    ),
    ("413", "too_many_values or body_too_large: split the batch"),
    ("422", "value_too_long"),
    (
        "429",
        "too_many_requests: the key's limit; wait for Retry-After",
    ),
    (
        "503",
        "overloaded, timeout or audit_unavailable: retry after Retry-After",
    ),
];

/// The document's frame; its [`Modify`] adds what holds for every route once they are in.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "pseudonym",
        version = "1",
        description = "Keyed, deterministic or randomized pseudonyms for personal data, and \
            re-identification for those allowed to. Tokens look like `d1.<base64url>`: mode \
            letter (d, r, h), key version, payload."
    ),
    tags(
        (name = "v1", description = "This service's own API"),
        (name = "compat", description = "The routes of the replaced AWS service, for its callers as they are"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    ),
)]
pub(super) struct Conventions;

impl Modify for Conventions {
    fn modify(&self, document: &mut OpenApi) {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
        components
            .schemas
            .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
        for (name, schema) in error_body_schemas() {
            components.schemas.entry(name).or_insert(schema);
        }
        for (status, codes) in REFUSALS {
            let refusal = ResponseBuilder::new()
                .description(format!("Refused: {codes}"))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                        .build(),
                )
                .build();
            components
                .responses
                .insert(status.to_owned(), refusal.into());
        }
        document.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new()),
            utoipa::openapi::security::SecurityRequirement::new("apiKey", Vec::<String>::new()),
        ]);
        for item in document.paths.paths.values_mut() {
            if let Some(post) = item.post.as_mut() {
                add_refusals(post);
            }
        }
    }
}

/// The schemas [`ErrorBody`] refers to.
fn error_body_schemas() -> Vec<(
    String,
    utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
)> {
    let mut schemas = Vec::new();
    <ErrorBody as ToSchema>::schemas(&mut schemas);
    schemas
}

fn add_refusals(operation: &mut Operation) {
    for (status, _) in REFUSALS {
        operation.responses.responses.insert(
            status.to_owned(),
            Ref::new(format!("#/components/responses/{status}")).into(),
        );
    }
}
