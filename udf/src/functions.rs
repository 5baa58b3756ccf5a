//! The SQL functions `pseudonymize(value, domain [, mode [, on_error]])`,
//! `reidentify(token, domain [, on_error])` and `rewrap(token, domain [, on_error])`, as
//! DataFusion async scalar UDFs.
//!
//! Each invocation sends the whole record batch's column through the client (deduplicated,
//! batched, pipelined), so a query makes one set of service calls per record batch, never one
//! per row. The calls run on a separate I/O runtime, never on the engine's CPU threads.
//!
//! Calls nested in another's arguments (`reidentify(pseudonymize(vin, 'vin'), 'vin')`) are
//! planned by [`NestedCalls`]: DataFusion cannot run an async function inside another's
//! arguments, so there the inner one becomes a blocking twin of itself, whose engine thread
//! waits while the I/O runtime makes the call (the I/O runtime must not be the engine's).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::SessionContext;
use pseudonym_client::arrow::{output_type, token_output_type};
use pseudonym_client::wire::{Domain, InvalidDomain};
use pseudonym_client::{Client, Mode};
use tokio::runtime::Handle;

/// What the functions share: the client, the runtime its I/O runs on, and a counter of values
/// sent (for progress displays).
#[derive(Debug, Clone)]
pub struct Service {
    client: Client,
    io: Handle,
    values: Arc<AtomicU64>,
}

impl Service {
    /// Functions that call the service through `client`, with network I/O on `io`: a runtime
    /// other than the one DataFusion runs its CPU work on.
    pub fn new(client: Client, io: Handle) -> Self {
        Service {
            client,
            io,
            values: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Registers `pseudonymize`, `reidentify` and `rewrap` in `ctx`, and the [`NestedCalls`]
    /// rule that lets them nest.
    pub fn register(&self, ctx: &SessionContext) {
        let mut blocking = HashMap::new();
        for operation in Operation::ALL {
            let function = self.function(operation);
            blocking.insert(
                operation.name(),
                Arc::new(ScalarUDF::new_from_impl(function.clone())),
            );
            ctx.register_udf(AsyncScalarUDF::new(Arc::new(function)).into_scalar_udf());
        }
        ctx.add_analyzer_rule(Arc::new(NestedCalls { blocking }));
    }

    /// Rows the functions have handed to the client so far.
    pub fn values_sent(&self) -> u64 {
        self.values.load(Ordering::Relaxed)
    }

    fn function(&self, operation: Operation) -> ServiceFunction {
        let arities = match operation {
            Operation::Pseudonymize => 2..=4,
            Operation::Reidentify | Operation::Rewrap => 2..=3,
        };
        ServiceFunction {
            operation,
            service: self.clone(),
            signature: Signature::one_of(
                arities.map(TypeSignature::Any).collect(),
                // The answer comes from outside the engine: never fold it into a constant.
                Volatility::Volatile,
            ),
        }
    }
}

/// Plans service calls nested in another's arguments, such as
/// `reidentify(pseudonymize(vin, 'vin'), 'vin')`.
///
/// DataFusion runs async functions in a plan step of their own, but evaluates their arguments
/// synchronously, so an async call inside them fails ("async functions should not be called
/// directly"). This analyzer rule swaps every service call inside a service call's arguments,
/// at any depth, for a blocking twin: the outer call stays async, the inner one waits for the
/// service on the thread that evaluates the arguments.
#[derive(Debug)]
struct NestedCalls {
    /// The blocking twin of each function, by name.
    blocking: HashMap<&'static str, Arc<ScalarUDF>>,
}

impl AnalyzerRule for NestedCalls {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            node.map_expressions(|expr| expr.transform_down(|e| self.outer_call(e)))
        })
        .map(|rewritten| rewritten.data)
    }

    fn name(&self) -> &str {
        "pseudonym_nested_calls"
    }
}

impl NestedCalls {
    /// `expr` with the service calls in its arguments made blocking, if it is an async service
    /// call; its arguments are then done with.
    fn outer_call(&self, expr: Expr) -> Result<Transformed<Expr>> {
        let Expr::ScalarFunction(mut call) = expr else {
            return Ok(Transformed::no(expr));
        };
        if !self.is_async_call(&call) {
            return Ok(Transformed::no(Expr::ScalarFunction(call)));
        }
        let mut changed = false;
        call.args = call
            .args
            .into_iter()
            .map(|arg| {
                let arg = arg.transform_up(|e| self.blocking_call(e))?;
                changed |= arg.transformed;
                Ok(arg.data)
            })
            .collect::<Result<_>>()?;
        Ok(Transformed::new(
            Expr::ScalarFunction(call),
            changed,
            TreeNodeRecursion::Jump,
        ))
    }

    /// `expr` as a call of the blocking twin, if it is an async service call.
    fn blocking_call(&self, expr: Expr) -> Result<Transformed<Expr>> {
        match expr {
            Expr::ScalarFunction(call) if self.is_async_call(&call) => {
                let twin = Arc::clone(&self.blocking[call.func.name()]);
                Ok(Transformed::yes(Expr::ScalarFunction(
                    ScalarFunction::new_udf(twin, call.args),
                )))
            }
            other => Ok(Transformed::no(other)),
        }
    }

    fn is_async_call(&self, call: &ScalarFunction) -> bool {
        call.func.as_async().is_some() && self.blocking.contains_key(call.func.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Operation {
    Pseudonymize,
    Reidentify,
    /// Tokens of older key versions (or of the replaced service) to tokens of the primary one.
    Rewrap,
}

impl Operation {
    const ALL: [Operation; 3] = [
        Operation::Pseudonymize,
        Operation::Reidentify,
        Operation::Rewrap,
    ];

    fn name(self) -> &'static str {
        match self {
            Operation::Pseudonymize => "pseudonymize",
            Operation::Reidentify => "reidentify",
            Operation::Rewrap => "rewrap",
        }
    }

    /// What happened to a token that failed, for error messages.
    fn failed(self) -> &'static str {
        match self {
            Operation::Pseudonymize => "pseudonymized",
            Operation::Reidentify => "re-identified",
            Operation::Rewrap => "rewrapped",
        }
    }
}

/// What to do with an item that fails: a pseudonym that cannot be re-identified or rewrapped,
/// a value without a format-preserving pseudonym.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnError {
    Fail,
    Null,
}

/// The literal arguments after the first, checked.
struct Literals<'a> {
    domain: &'a str,
    mode: Mode,
    on_error: OnError,
}

#[derive(Debug, Clone)]
struct ServiceFunction {
    operation: Operation,
    service: Service,
    signature: Signature,
}

impl PartialEq for ServiceFunction {
    fn eq(&self, other: &Self) -> bool {
        self.operation == other.operation
    }
}

impl Eq for ServiceFunction {}

impl Hash for ServiceFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.operation.hash(state);
    }
}

impl ServiceFunction {
    /// Checks the literal arguments: the domain always, then the mode and what to do on
    /// failure (`pseudonymize`) or only the latter (`reidentify`, `rewrap`).
    fn literals<'a>(&self, scalars: &[Option<&'a ScalarValue>]) -> Result<Literals<'a>> {
        let name = self.operation.name();
        let text = |index: usize, what: &str| -> Result<&'a str> {
            match scalars.get(index).copied().flatten() {
                Some(ScalarValue::Utf8(Some(s)))
                | Some(ScalarValue::LargeUtf8(Some(s)))
                | Some(ScalarValue::Utf8View(Some(s))) => Ok(s.as_str()),
                _ => plan_err!(
                    "{name}: argument {} ({what}) must be a string literal",
                    index + 1
                ),
            }
        };
        let domain = text(1, "domain")?;
        if Domain::new(domain).is_err() {
            return plan_err!("{name}: {InvalidDomain}");
        }
        let mut literals = Literals {
            domain,
            mode: Mode::Deterministic,
            on_error: OnError::Fail,
        };
        let on_error_at = match self.operation {
            Operation::Pseudonymize => 3,
            Operation::Reidentify | Operation::Rewrap => 2,
        };
        if self.operation == Operation::Pseudonymize && scalars.len() > 2 {
            literals.mode = text(2, "mode")?
                .parse()
                .map_err(|e| DataFusionError::Plan(format!("{name}: {e}")))?;
        }
        if scalars.len() > on_error_at {
            literals.on_error = match text(on_error_at, "on_error")? {
                "error" => OnError::Fail,
                "null" => OnError::Null,
                _ => return plan_err!("{name}: on_error must be 'error' or 'null'"),
            };
        }
        Ok(literals)
    }
}

impl ScalarUDFImpl for ServiceFunction {
    fn name(&self) -> &str {
        self.operation.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        datafusion::common::internal_err!("{}: return_field_from_args is used", self.name())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let literals = self.literals(args.scalar_arguments)?;
        let output = match (args.arg_fields[0].data_type(), self.operation) {
            (DataType::Null, _) => Ok(DataType::Utf8),
            (input, Operation::Pseudonymize) => output_type(input, literals.mode),
            (input, Operation::Reidentify | Operation::Rewrap) => token_output_type(input),
        }
        .map_err(|e| DataFusionError::Plan(format!("{}: {e}", self.name())))?;
        Ok(Arc::new(Field::new(self.name(), output, true)))
    }

    /// The blocking twin (see [`NestedCalls`]): the async call, waited for on this thread
    /// while the I/O runtime does the work.
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        futures::executor::block_on(self.invoke_async_with_args(args))
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for ServiceFunction {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.name();
        let scalars: Vec<Option<&ScalarValue>> = args
            .args
            .iter()
            .map(|arg| match arg {
                ColumnarValue::Scalar(scalar) => Some(scalar),
                ColumnarValue::Array(_) => None,
            })
            .collect();
        let literals = self.literals(&scalars)?;
        let input: ArrayRef = match &args.args[0] {
            ColumnarValue::Array(array) => array.clone(),
            ColumnarValue::Scalar(scalar) => scalar.to_array_of_size(args.number_rows)?,
        };
        if input.data_type() == &DataType::Null {
            let nulls = datafusion::arrow::array::new_null_array(&DataType::Utf8, input.len());
            return Ok(ColumnarValue::Array(nulls));
        }
        self.service
            .values
            .fetch_add(input.len() as u64, Ordering::Relaxed);
        let client = self.service.client.clone();
        let (domain, mode, on_error, operation) = (
            literals.domain.to_owned(),
            literals.mode,
            literals.on_error,
            self.operation,
        );
        let call = self.service.io.spawn(async move {
            match operation {
                Operation::Pseudonymize => client
                    .pseudonymize_array_with_errors(&domain, mode, input.as_ref())
                    .await
                    .map(|answer| (answer.values, answer.errors)),
                Operation::Reidentify => client
                    .reidentify_array(&domain, input.as_ref())
                    .await
                    .map(|answer| (answer.values, answer.errors)),
                Operation::Rewrap => client
                    .rewrap_array(&domain, input.as_ref())
                    .await
                    .map(|answer| (answer.values, answer.errors)),
            }
        });
        let (output, errors) = call
            .await
            .map_err(|e| DataFusionError::Execution(format!("{name}: the call was lost: {e}")))?
            .map_err(|e| DataFusionError::Execution(format!("{name}: {e}")))?;
        if let (Some(first), OnError::Fail) = (errors.first(), on_error) {
            return exec_err!(
                "{name}: {} value(s) could not be {} (first at row {} of the batch: {}); \
                 pass 'null' as on_error to keep them as NULL",
                errors.len(),
                operation.failed(),
                first.index,
                first.code
            );
        }
        Ok(ColumnarValue::Array(output))
    }
}
