//! The worst-case cost of one CEL rule, estimated as kube-apiserver estimates it when a CRD is
//! created or updated: cel-go's static cost estimator (`checker/cost.go`) with Kubernetes' size
//! model (`apiextensions-apiserver/pkg/apiserver/schema/cel`, `k8s.io/apiserver/pkg/cel`), where
//! every string, list and map is as large as the schema's bounds allow, or as the request-size
//! limit allows when the schema sets none.
//!
//! cel-go estimates over a type-checked AST; the `cel` crate has no checker, so the few types the
//! estimate depends on (is the operand of a select an object or a map, is an argument a string, a
//! list or a scalar) are inferred here from the schema, as the checker would.

use std::collections::{BTreeMap, HashMap};

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue, operators};
use serde_json::Value;

/// kube-apiserver's limit on a request body (`DefaultMaxRequestSizeBytes`), from which the size
/// of everything unbounded is estimated.
pub const MAX_REQUEST_SIZE_BYTES: i64 = 3 * 1024 * 1024;

const STRING_TRAVERSAL_COST_FACTOR: f64 = 0.1;
const REGEX_STRING_LENGTH_COST_FACTOR: f64 = 0.25;
const LIST_CREATE_BASE_COST: u64 = 10;
const MAP_CREATE_BASE_COST: u64 = 30;
const STRUCT_CREATE_BASE_COST: u64 = 40;

// Serialized sizes kube-apiserver assumes (`k8s.io/apiserver/pkg/cel/limits.go`).
const MIN_STRING_SIZE: i64 = 2;
const MIN_BOOL_SIZE: i64 = 4;
const MIN_NUMBER_SIZE: i64 = 1;
const MIN_DURATION_SIZE_JSON: i64 = 3;
const MAX_DURATION_SIZE_JSON: i64 = 32;
const JSON_DATE_SIZE: i64 = 12;
const MIN_DATETIME_SIZE_JSON: i64 = 21;
const MAX_DATETIME_SIZE_JSON: i64 = 32;

/// What kind of value a schema node holds, as CEL sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Object,
    List,
    Map,
    String,
    Bytes,
    Bool,
    Int,
    Double,
    Duration,
    Timestamp,
    Dyn,
}

/// A schema node as kube-apiserver declares it to CEL (`apiservercel.DeclType`): its kind, the
/// most elements (characters, items, properties) it may hold and the fewest bytes it serializes to.
#[derive(Debug, Clone)]
pub struct DeclType {
    pub kind: Kind,
    pub max_elements: i64,
    pub min_serialized_size: i64,
    pub fields: BTreeMap<String, DeclType>,
    pub elem: Option<Box<DeclType>>,
    pub key: Option<Box<DeclType>>,
}

impl DeclType {
    fn simple(kind: Kind, min_serialized_size: i64) -> Self {
        DeclType {
            kind,
            max_elements: 0,
            min_serialized_size,
            fields: BTreeMap::new(),
            elem: None,
            key: None,
        }
    }

    /// The declaration of `schema` (`SchemaDeclType`), or `None` where CEL cannot see it.
    /// `resource_root` adds `apiVersion`, `kind` and `metadata.name`/`generateName`, which rules
    /// at the root of a resource may always read.
    pub fn of_schema(schema: &Value, resource_root: bool) -> Option<DeclType> {
        let flag = |name: &str| schema.get(name).and_then(Value::as_bool) == Some(true);
        let bound = |name: &str| schema.get(name).and_then(Value::as_i64).map(|v| v.max(0));
        if flag("x-kubernetes-int-or-string") {
            let mut dyn_type = DeclType::simple(Kind::Dyn, 1);
            dyn_type.max_elements = MAX_REQUEST_SIZE_BYTES - 2;
            return Some(dyn_type);
        }
        let schema_type = schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match schema_type {
            "array" => {
                let items = schema.get("items")?;
                let item_type = DeclType::of_schema(items, is_embedded(items))?;
                let max_items = bound("maxItems").unwrap_or_else(|| {
                    (MAX_REQUEST_SIZE_BYTES - 2) / (item_type.min_serialized_size + 1)
                });
                let mut list = DeclType::simple(Kind::List, 2);
                list.max_elements = max_items;
                list.elem = Some(Box::new(item_type));
                Some(list)
            }
            "object" => {
                if let Some(additional) =
                    schema.get("additionalProperties").filter(|a| a.is_object())
                {
                    let value_type = DeclType::of_schema(additional, is_embedded(additional))?;
                    let max_properties = bound("maxProperties").unwrap_or_else(|| {
                        (MAX_REQUEST_SIZE_BYTES - 2) / (value_type.min_serialized_size + 6)
                    });
                    let mut map = DeclType::simple(Kind::Map, 2);
                    map.max_elements = max_properties;
                    // Keys are declared as the plain string type, whose size bound is zero:
                    // kube-apiserver estimates a key's traversal at nothing.
                    map.key = Some(Box::new(DeclType::simple(Kind::String, MIN_STRING_SIZE)));
                    map.elem = Some(Box::new(value_type));
                    return Some(map);
                }
                let required: Vec<&str> = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut object = DeclType::simple(Kind::Object, 2);
                let mut min_size = 2;
                let properties = schema.get("properties").and_then(Value::as_object);
                for (name, property) in properties.into_iter().flatten() {
                    let Some(field) = DeclType::of_schema(property, is_embedded(property)) else {
                        continue;
                    };
                    if required.contains(&name.as_str()) && property.get("default").is_none() {
                        min_size += name.len() as i64 + field.min_serialized_size + 4;
                    }
                    object.fields.insert(name.clone(), field);
                }
                if resource_root {
                    let unbounded_string = || {
                        let mut s = DeclType::simple(Kind::String, MIN_STRING_SIZE);
                        s.max_elements = MAX_REQUEST_SIZE_BYTES - 2;
                        s
                    };
                    let complete = object.fields.get("metadata").is_some_and(|m| {
                        m.fields.contains_key("name") && m.fields.contains_key("generateName")
                    }) && object.fields.contains_key("kind")
                        && object.fields.contains_key("apiVersion");
                    if !complete {
                        object.fields.insert("kind".into(), unbounded_string());
                        object
                            .fields
                            .insert("apiVersion".into(), unbounded_string());
                        let mut metadata = DeclType::simple(Kind::Object, 2);
                        metadata.fields.insert("name".into(), unbounded_string());
                        metadata
                            .fields
                            .insert("generateName".into(), unbounded_string());
                        object.fields.insert("metadata".into(), metadata);
                    }
                }
                object.min_serialized_size = min_size;
                Some(object)
            }
            "string" => {
                let format = schema
                    .get("format")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let unbounded = match format {
                    "duration" => MAX_DURATION_SIZE_JSON,
                    "date" => JSON_DATE_SIZE,
                    "date-time" => MAX_DATETIME_SIZE_JSON,
                    _ => MAX_REQUEST_SIZE_BYTES - 2,
                };
                let (kind, min_size, scale) = match format {
                    "byte" => (Kind::Bytes, MIN_STRING_SIZE, 1),
                    "duration" => (Kind::Duration, MIN_DURATION_SIZE_JSON, 0),
                    "date" => (Kind::Timestamp, JSON_DATE_SIZE, 0),
                    "date-time" => (Kind::Timestamp, MIN_DATETIME_SIZE_JSON, 0),
                    // maxLength counts code points; CEL sizes count bytes, up to 4 per code point.
                    _ => (Kind::String, MIN_STRING_SIZE, 4),
                };
                let mut string = DeclType::simple(kind, min_size);
                string.max_elements = match (bound("maxLength"), scale) {
                    (Some(max_length), 1 | 4) => max_length * scale,
                    _ if kind == Kind::String => schema
                        .get("enum")
                        .and_then(Value::as_array)
                        .filter(|e| !e.is_empty())
                        .map(|e| {
                            e.iter()
                                .filter_map(Value::as_str)
                                .map(|s| s.len() as i64)
                                .max()
                                .unwrap_or(0)
                        })
                        .unwrap_or(unbounded),
                    _ => unbounded,
                };
                Some(string)
            }
            "boolean" => Some(DeclType::simple(Kind::Bool, MIN_BOOL_SIZE)),
            "number" => Some(DeclType::simple(Kind::Double, MIN_NUMBER_SIZE)),
            "integer" => Some(DeclType::simple(Kind::Int, MIN_NUMBER_SIZE)),
            _ => None,
        }
    }

    /// How many times a value of this type could appear in one request
    /// (`maxCardinality`): the bound used for a rule under an unbounded list or map.
    pub fn max_cardinality(&self) -> u64 {
        (MAX_REQUEST_SIZE_BYTES / (self.min_serialized_size + 1)) as u64
    }
}

fn is_embedded(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        == Some(true)
}

/// A `[min, max]` range of costs or sizes that saturates instead of overflowing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub min: u64,
    pub max: u64,
}

impl Estimate {
    const UNKNOWN: Estimate = Estimate {
        min: 0,
        max: u64::MAX,
    };
    const ZERO: Estimate = Estimate { min: 0, max: 0 };

    fn fixed(value: u64) -> Self {
        Estimate {
            min: value,
            max: value,
        }
    }
    fn add(self, other: Estimate) -> Self {
        Estimate {
            min: self.min.saturating_add(other.min),
            max: self.max.saturating_add(other.max),
        }
    }
    fn multiply(self, other: Estimate) -> Self {
        Estimate {
            min: self.min.saturating_mul(other.min),
            max: self.max.saturating_mul(other.max),
        }
    }
    fn by_factor(self, factor: f64) -> Self {
        Estimate {
            min: multiply_by_cost_factor(self.min, factor),
            max: multiply_by_cost_factor(self.max, factor),
        }
    }
    fn union(self, other: Estimate) -> Self {
        Estimate {
            min: self.min.min(other.min),
            max: self.max.max(other.max),
        }
    }
}

fn multiply_by_cost_factor(value: u64, factor: f64) -> u64 {
    let product = (value as f64 * factor).ceil();
    if product >= 18_446_744_073_709_551_616.0 {
        u64::MAX
    } else {
        product as u64
    }
}

/// The type of an expression, as far as the estimate needs it.
#[derive(Debug, Clone)]
enum Ty<'a> {
    Decl(&'a DeclType),
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Null,
    Duration,
    Timestamp,
    List(Box<Ty<'a>>),
    Map(Box<Ty<'a>>, Box<Ty<'a>>),
    Dyn,
}

impl<'a> Ty<'a> {
    fn kind(&self) -> Kind {
        match self {
            Ty::Decl(decl) => decl.kind,
            Ty::Bool => Kind::Bool,
            Ty::Int | Ty::Uint => Kind::Int,
            Ty::Double => Kind::Double,
            Ty::String => Kind::String,
            Ty::Bytes => Kind::Bytes,
            Ty::Duration => Kind::Duration,
            Ty::Timestamp => Kind::Timestamp,
            Ty::List(_) => Kind::List,
            Ty::Map(..) => Kind::Map,
            Ty::Null | Ty::Dyn => Kind::Dyn,
        }
    }
    fn is_scalar(&self) -> bool {
        matches!(
            self.kind(),
            Kind::Bool | Kind::Int | Kind::Double | Kind::Duration | Kind::Timestamp
        )
    }
    fn is_text(&self) -> bool {
        matches!(self.kind(), Kind::String | Kind::Bytes)
    }
    /// The type of an element (a list's item, a map's value).
    fn element(&self) -> Ty<'a> {
        match self {
            Ty::Decl(decl) => decl.elem.as_deref().map_or(Ty::Dyn, Ty::Decl),
            Ty::List(elem) | Ty::Map(_, elem) => (**elem).clone(),
            _ => Ty::Dyn,
        }
    }
    /// The type a comprehension's single variable takes: a list's item or a map's key.
    fn iteration(&self) -> Ty<'a> {
        match self {
            Ty::Decl(decl) if decl.kind == Kind::Map => {
                decl.key.as_deref().map_or(Ty::String, Ty::Decl)
            }
            Ty::Map(key, _) => (**key).clone(),
            other => other.element(),
        }
    }
    fn field(&self, name: &str) -> Ty<'a> {
        match self {
            Ty::Decl(decl) if decl.kind == Kind::Object => {
                decl.fields.get(name).map_or(Ty::Dyn, Ty::Decl)
            }
            Ty::Decl(decl) if decl.kind == Kind::Map => {
                decl.elem.as_deref().map_or(Ty::Dyn, Ty::Decl)
            }
            Ty::Map(_, value) => (**value).clone(),
            _ => Ty::Dyn,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct EntrySize {
    container: Kind,
    key: Estimate,
    value: Estimate,
}

struct LocalVar<'a> {
    path: Vec<String>,
    size: Option<Estimate>,
    entry_size: Option<EntrySize>,
    ty: Ty<'a>,
}

/// A node's facts, as cel-go hands them to a `CostEstimator`.
struct Node<'a> {
    path: Vec<String>,
    ty: Ty<'a>,
    computed_size: Option<Estimate>,
}

impl Node<'_> {
    /// The node's size, as far as anything tells (`sizeOrUnknown`).
    fn size(&self) -> Estimate {
        self.computed_size.unwrap_or(Estimate::UNKNOWN)
    }
}

/// Estimates the cost of one parsed rule declared on `root` (`self` and `oldSelf`).
struct Coster<'a> {
    root: &'a DeclType,
    paths: HashMap<u64, Vec<String>>,
    types: HashMap<u64, Ty<'a>>,
    sizes: HashMap<u64, Estimate>,
    entry_sizes: HashMap<u64, EntrySize>,
    locals: HashMap<String, Vec<LocalVar<'a>>>,
}

/// The worst-case cost of `rule` on a value of type `root` (cel-go's `EstimateCost(...).Max`),
/// or the parser's error.
pub fn estimate_rule_cost(rule: &str, root: &DeclType) -> Result<u64, String> {
    let expr = cel::parser::Parser::new()
        .parse(rule)
        .map_err(|e| e.to_string())?;
    let mut coster = Coster {
        root,
        paths: HashMap::new(),
        types: HashMap::new(),
        sizes: HashMap::new(),
        entry_sizes: HashMap::new(),
        locals: HashMap::new(),
    };
    Ok(coster.cost(&expr).max)
}

fn is_accumulator(name: &str) -> bool {
    name == "@result" || name == "__result__"
}

impl<'a> Coster<'a> {
    fn ty(&self, e: &IdedExpr) -> Ty<'a> {
        self.types.get(&e.id).cloned().unwrap_or(Ty::Dyn)
    }

    fn path(&self, e: &IdedExpr) -> Vec<String> {
        if let Expr::Ident(name) = &e.expr
            && let Some(var) = self.locals.get(name).and_then(|v| v.last())
        {
            return var.path.clone();
        }
        self.paths.get(&e.id).cloned().unwrap_or_default()
    }

    fn local(&self, name: &str) -> Option<&LocalVar<'a>> {
        self.locals.get(name).and_then(|v| v.last())
    }

    fn cost(&mut self, e: &IdedExpr) -> Estimate {
        let (cost, ty) = match &e.expr {
            Expr::Literal(literal) => (Estimate::ZERO, literal_type(literal)),
            Expr::Ident(name) => {
                let (path, ty) = match self.local(name) {
                    Some(var) => (var.path.clone(), var.ty.clone()),
                    None if name == "self" || name == "oldSelf" => {
                        (vec![name.clone()], Ty::Decl(self.root))
                    }
                    None => (vec![name.clone()], Ty::Dyn),
                };
                self.paths.insert(e.id, path);
                (Estimate::fixed(1), ty)
            }
            Expr::Select(select) => {
                let mut sum = Estimate::ZERO;
                if select.test {
                    // A presence test costs one, plus its operand.
                    sum = sum.add(Estimate::fixed(1));
                    sum = sum.add(self.cost(&select.operand));
                    (sum, Ty::Bool)
                } else {
                    sum = sum.add(self.cost(&select.operand));
                    let operand = self.ty(&select.operand);
                    // cel-go charges a select on an object or a map. A type this inference
                    // does not know is charged as an object (at most one unit too many).
                    if matches!(operand.kind(), Kind::Map | Kind::Object | Kind::Dyn) {
                        sum = sum.add(Estimate::fixed(1));
                    }
                    let mut path = self.path(&select.operand);
                    path.push(select.field.clone());
                    self.paths.insert(e.id, path);
                    (sum, operand.field(&select.field))
                }
            }
            Expr::Call(call) => return self.cost_call(e, call),
            Expr::List(list) => {
                let mut sum = Estimate::ZERO;
                let mut item_size = Estimate {
                    min: if list.elements.is_empty() {
                        0
                    } else {
                        u64::MAX
                    },
                    max: 0,
                };
                let mut elem_ty = None;
                for element in &list.elements {
                    sum = sum.add(self.cost(element));
                    item_size = item_size.union(self.size_or_unknown(element));
                    elem_ty.get_or_insert_with(|| self.ty(element));
                }
                self.entry_sizes.insert(
                    e.id,
                    EntrySize {
                        container: Kind::List,
                        key: Estimate::fixed(1),
                        value: item_size,
                    },
                );
                let ty = Ty::List(Box::new(elem_ty.unwrap_or(Ty::Dyn)));
                (sum.add(Estimate::fixed(LIST_CREATE_BASE_COST)), ty)
            }
            Expr::Map(map) => {
                let mut sum = Estimate::ZERO;
                let empty = map.entries.is_empty();
                let mut key_size = Estimate {
                    min: if empty { 0 } else { u64::MAX },
                    max: 0,
                };
                let mut value_size = key_size;
                let mut types = None;
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(entry) = &entry.expr {
                        sum = sum.add(self.cost(&entry.key));
                        sum = sum.add(self.cost(&entry.value));
                        key_size = key_size.union(self.size_or_unknown(&entry.key));
                        value_size = value_size.union(self.size_or_unknown(&entry.value));
                        types.get_or_insert_with(|| (self.ty(&entry.key), self.ty(&entry.value)));
                    }
                }
                self.entry_sizes.insert(
                    e.id,
                    EntrySize {
                        container: Kind::Map,
                        key: key_size,
                        value: value_size,
                    },
                );
                let (key, value) = types.unwrap_or((Ty::Dyn, Ty::Dyn));
                let ty = Ty::Map(Box::new(key), Box::new(value));
                (sum.add(Estimate::fixed(MAP_CREATE_BASE_COST)), ty)
            }
            Expr::Struct(structure) => {
                let mut sum = Estimate::ZERO;
                for entry in &structure.entries {
                    if let EntryExpr::StructField(field) = &entry.expr {
                        sum = sum.add(self.cost(&field.value));
                    }
                }
                (sum.add(Estimate::fixed(STRUCT_CREATE_BASE_COST)), Ty::Dyn)
            }
            Expr::Comprehension(comprehension) => {
                return self.cost_comprehension(e, comprehension);
            }
            Expr::Unspecified => (Estimate::ZERO, Ty::Dyn),
        };
        self.types.insert(e.id, ty);
        cost
    }

    fn cost_comprehension(
        &mut self,
        e: &IdedExpr,
        c: &cel::common::ast::ComprehensionExpr,
    ) -> Estimate {
        let is_bind = matches!(&c.iter_range.expr, Expr::List(l) if l.elements.is_empty())
            && matches!(&c.loop_cond.expr, Expr::Literal(LiteralValue::Boolean(b)) if !**b)
            && !is_accumulator(&c.accu_var);
        let mut sum = self.cost(&c.iter_range);
        sum = sum.add(self.cost(&c.accu_init));
        self.push_local(&c.accu_var, &c.accu_init);
        if is_bind {
            sum = sum.add(self.cost(&c.result));
            self.pop_local(&c.accu_var);
            if let Some(size) = self.compute_size(&c.result) {
                self.sizes.insert(e.id, size);
            }
            if let Some(entry) = self.compute_entry_size(&c.result) {
                self.entry_sizes.insert(e.id, entry);
            }
            let ty = self.ty(&c.result);
            self.types.insert(e.id, ty);
            return sum;
        }
        let range_ty = self.ty(&c.iter_range);
        let entry = self.compute_entry_size(&c.iter_range);
        let container = entry
            .map(|s| s.container)
            .unwrap_or_else(|| range_ty.kind());
        let range_path = self.path(&c.iter_range);
        match &c.iter_var2 {
            Some(second) => {
                let (key_sub, value_sub) = if container == Kind::List {
                    ("@indices", "@items")
                } else {
                    ("@keys", "@values")
                };
                let key_ty = if container == Kind::List {
                    Ty::Int
                } else {
                    range_ty.iteration()
                };
                self.push_iteration(
                    &c.iter_var,
                    &range_path,
                    key_sub,
                    entry.map(|s| s.key),
                    key_ty,
                );
                let value_ty = range_ty.element();
                self.push_iteration(
                    second,
                    &range_path,
                    value_sub,
                    entry.map(|s| s.value),
                    value_ty,
                );
            }
            None => {
                let (sub, size) = if container == Kind::List {
                    ("@items", entry.map(|s| s.value))
                } else {
                    ("@keys", entry.map(|s| s.key))
                };
                self.push_iteration(&c.iter_var, &range_path, sub, size, range_ty.iteration());
            }
        }
        let loop_cost = self.cost(&c.loop_cond);
        let step_cost = self.cost(&c.loop_step);
        self.pop_local(&c.iter_var);
        if let Some(second) = &c.iter_var2 {
            self.pop_local(second);
        }
        sum = sum.add(self.cost(&c.result));
        let result_ty = self.ty(&c.result);
        self.pop_local(&c.accu_var);
        let range_count = self.size_or_unknown(&c.iter_range);
        sum = sum.add(range_count.multiply(step_cost.add(loop_cost)));
        match &c.accu_init.expr {
            Expr::Literal(_) => {
                if let Some(size) = self.compute_size(&c.accu_init) {
                    self.sizes.insert(e.id, size);
                }
            }
            Expr::List(_) | Expr::Map(_) => {
                self.sizes.insert(e.id, range_count);
                if let Some(step_entry) = self.compute_entry_size(&c.loop_step) {
                    self.entry_sizes.insert(e.id, step_entry);
                }
            }
            _ => {}
        }
        self.types.insert(e.id, result_ty);
        sum
    }

    fn push_local(&mut self, name: &str, e: &IdedExpr) {
        let var = LocalVar {
            path: self.path(e),
            size: self.compute_size(e),
            entry_size: self.compute_entry_size(e),
            ty: self.ty(e),
        };
        self.locals.entry(name.to_owned()).or_default().push(var);
    }

    fn push_iteration(
        &mut self,
        name: &str,
        range_path: &[String],
        sub: &str,
        size: Option<Estimate>,
        ty: Ty<'a>,
    ) {
        let mut path = range_path.to_vec();
        path.push(sub.to_owned());
        let var = LocalVar {
            path,
            size,
            entry_size: None,
            ty,
        };
        self.locals.entry(name.to_owned()).or_default().push(var);
    }

    fn pop_local(&mut self, name: &str) {
        if let Some(stack) = self.locals.get_mut(name) {
            stack.pop();
        }
    }

    fn node(&self, e: &IdedExpr) -> Node<'a> {
        let mut path = self.path(e);
        if path.first().is_some_and(|p| is_accumulator(p)) {
            path.clear();
        }
        Node {
            path,
            ty: self.ty(e),
            computed_size: self.compute_size(e),
        }
    }

    fn cost_call(&mut self, e: &IdedExpr, call: &cel::common::ast::CallExpr) -> Estimate {
        let function = call.func_name.as_str();
        if function == "dyn" && call.target.is_none() && call.args.len() == 1 {
            let arg = &call.args[0];
            let cost = Estimate::fixed(1).add(self.cost(arg));
            if let Some(size) = self.compute_size(arg) {
                self.sizes.insert(e.id, size);
            }
            if let Some(entry) = self.compute_entry_size(arg) {
                self.entry_sizes.insert(e.id, entry);
            }
            let ty = self.ty(arg);
            self.types.insert(e.id, ty);
            return cost;
        }
        let mut arg_costs = Vec::with_capacity(call.args.len());
        for arg in &call.args {
            arg_costs.push(self.cost(arg));
        }
        let mut sum = Estimate::ZERO;
        let target = call.target.as_deref().map(|t| {
            sum = sum.add(self.cost(t));
            self.node(t)
        });
        let args: Vec<Node<'a>> = call.args.iter().map(|a| self.node(a)).collect();
        let arg_cost_sum = arg_costs.iter().fold(Estimate::ZERO, |s, c| s.add(*c));
        let ty = self.result_type(function, &args);
        self.types.insert(e.id, ty);

        let mut result_size = None;
        let fn_cost = match self.library_call_cost(function, target.as_ref(), &args) {
            Some((cost, size)) => {
                result_size = size;
                cost.add(arg_cost_sum)
            }
            None => self.standard_call_cost(
                e,
                function,
                call,
                target.as_ref(),
                &args,
                &arg_costs,
                &mut result_size,
            ),
        };
        if function == operators::INDEX && !call.args.is_empty() {
            let container = &call.args[0];
            let sub = if args[0].ty.kind() == Kind::List {
                "@items"
            } else {
                "@values"
            };
            if matches!(
                args[0].ty.kind(),
                Kind::List | Kind::Map | Kind::Object | Kind::Dyn
            ) {
                result_size = self.compute_entry_size(container).map(|s| s.value);
                let mut path = self.path(container);
                path.push(sub.to_owned());
                self.paths.insert(e.id, path);
            }
        }
        if result_size.is_none() {
            result_size = self.compute_size(e);
        }
        if let Some(size) = result_size {
            self.sizes.insert(e.id, size);
        }
        sum.add(fn_cost)
    }

    /// cel-go's own call costs (`functionCost`).
    #[allow(clippy::too_many_arguments)]
    fn standard_call_cost(
        &mut self,
        e: &IdedExpr,
        function: &str,
        call: &cel::common::ast::CallExpr,
        target: Option<&Node<'a>>,
        args: &[Node<'a>],
        arg_costs: &[Estimate],
        result_size: &mut Option<Estimate>,
    ) -> Estimate {
        let arg_cost_sum = arg_costs.iter().fold(Estimate::ZERO, |s, c| s.add(*c));
        let size = Node::size;
        let traversal = STRING_TRAVERSAL_COST_FACTOR;
        match (function, target, args) {
            ("startsWith" | "endsWith", Some(t), [arg])
                if t.ty.is_text() || t.ty.kind() == Kind::Dyn =>
            {
                return size(arg).by_factor(traversal).add(arg_cost_sum);
            }
            (operators::IN, None, [_, list]) if list.ty.kind() == Kind::List => {
                return size(list).by_factor(1.0).add(arg_cost_sum);
            }
            ("matches", Some(t), [regex]) => {
                let string = size(t).add(Estimate::fixed(1)).by_factor(traversal);
                let regex = size(regex).by_factor(REGEX_STRING_LENGTH_COST_FACTOR);
                return string.multiply(regex).add(arg_cost_sum);
            }
            ("contains", Some(t), [sub]) if t.ty.is_text() || t.ty.kind() == Kind::Dyn => {
                let string = size(t).by_factor(traversal);
                let sub = size(sub).by_factor(traversal);
                return string.multiply(sub).add(arg_cost_sum);
            }
            (operators::LOGICAL_AND | operators::LOGICAL_OR, None, [_, _]) => {
                let (lhs, rhs) = (arg_costs[0], arg_costs[1]);
                return Estimate {
                    min: lhs.min,
                    max: lhs.add(rhs).max,
                };
            }
            (operators::CONDITIONAL, None, [_, if_true, if_false]) => {
                *result_size = Some(size(if_true).union(size(if_false)));
                self.union_entry_sizes(e, &call.args[1], &call.args[2]);
                return arg_costs[0].add(arg_costs[1].union(arg_costs[2]));
            }
            (operators::ADD, None, [lhs, rhs])
                if lhs.ty.is_text() || lhs.ty.kind() == Kind::List =>
            {
                let total = size(lhs).add(size(rhs));
                *result_size = Some(total);
                self.union_entry_sizes(e, &call.args[0], &call.args[1]);
                return if lhs.ty.kind() == Kind::List {
                    Estimate::fixed(1).add(arg_cost_sum)
                } else {
                    total.by_factor(traversal).add(arg_cost_sum)
                };
            }
            (
                operators::LESS
                | operators::GREATER
                | operators::LESS_EQUALS
                | operators::GREATER_EQUALS,
                None,
                [lhs, _],
            ) if lhs.ty.is_text() => {
                return equality_cost(size(&args[0]), size(&args[1])).add(arg_cost_sum);
            }
            (operators::EQUALS | operators::NOT_EQUALS, None, [lhs, rhs]) => {
                return equality_cost(size(lhs), size(rhs)).add(arg_cost_sum);
            }
            _ => {}
        }
        Estimate::fixed(1).add(arg_cost_sum)
    }

    /// `e`'s entries are either operand's (a conditional's branches, a concatenation).
    fn union_entry_sizes(&mut self, e: &IdedExpr, a: &IdedExpr, b: &IdedExpr) {
        if let (Some(a), Some(b)) = (self.compute_entry_size(a), self.compute_entry_size(b)) {
            let union = EntrySize {
                container: a.container,
                key: a.key.union(b.key),
                value: a.value.union(b.value),
            };
            self.entry_sizes.insert(e.id, union);
        }
    }

    /// Kubernetes' library costs (`k8s.io/apiserver/pkg/cel/library/cost.go`), or `None` for
    /// cel-go's own functions.
    fn library_call_cost(
        &self,
        function: &str,
        target: Option<&Node<'a>>,
        args: &[Node<'a>],
    ) -> Option<(Estimate, Option<Estimate>)> {
        let size = Node::size;
        let traversal = STRING_TRAVERSAL_COST_FACTOR;
        match function {
            "isSorted" | "sum" | "max" | "min" | "indexOf" | "lastIndexOf" => {
                let t = target?;
                if t.ty.kind() == Kind::List {
                    let mut element_cost = Estimate::fixed(1);
                    let element = t.ty.element();
                    if element.is_text() {
                        let mut path = t.path.clone();
                        path.push("@items".into());
                        let element_size = if t.path.is_empty() {
                            Estimate::UNKNOWN
                        } else {
                            self.estimate_size(&path).unwrap_or(Estimate::UNKNOWN)
                        };
                        element_cost = element_cost.add(element_size.by_factor(traversal));
                    }
                    Some((size(t).multiply(element_cost), None))
                } else {
                    Some((size(t).by_factor(traversal), None))
                }
            }
            "url" if args.len() == 1 => Some((size(&args[0]).by_factor(traversal), None)),
            "lowerAscii" | "upperAscii" | "substring" | "trim" => {
                let t = target?;
                let s = size(t);
                Some((s.by_factor(traversal), Some(s)))
            }
            "replace" | "split" => {
                let t = target?;
                Some((size(t).by_factor(2.0 * traversal), None))
            }
            "find" | "findAll" => {
                let t = target?;
                let regex = args.first()?;
                let s = size(t);
                let string = s.add(Estimate::fixed(1)).by_factor(traversal);
                let regex = size(regex).by_factor(REGEX_STRING_LENGTH_COST_FACTOR);
                Some((
                    string.multiply(regex),
                    Some(Estimate { min: 0, max: s.max }),
                ))
            }
            "quantity" | "isQuantity" | "cidr" | "isIP" | "isCIDR" if target.is_some() => {
                Some((size(args.first()?).by_factor(traversal), None))
            }
            "sign"
            | "asInteger"
            | "isInteger"
            | "asApproximateFloat"
            | "isGreaterThan"
            | "isLessThan"
            | "compareTo"
            | "add"
            | "sub"
            | "masked"
            | "prefixLength"
            | "family"
            | "isUnspecified"
            | "isLoopback"
            | "isLinkLocalMulticast"
            | "isLinkLocalUnicast" => Some((Estimate::fixed(1), None)),
            _ => None,
        }
    }

    fn result_type(&self, function: &str, args: &[Node<'a>]) -> Ty<'a> {
        match function {
            operators::LOGICAL_AND
            | operators::LOGICAL_OR
            | operators::LOGICAL_NOT
            | operators::EQUALS
            | operators::NOT_EQUALS
            | operators::LESS
            | operators::GREATER
            | operators::LESS_EQUALS
            | operators::GREATER_EQUALS
            | operators::IN
            | operators::NOT_STRICTLY_FALSE
            | "matches"
            | "contains"
            | "startsWith"
            | "endsWith"
            | "isSorted"
            | "isQuantity"
            | "isIP"
            | "isCIDR"
            | "isURL" => Ty::Bool,
            "size" | "int" | "indexOf" | "lastIndexOf" => Ty::Int,
            "uint" => Ty::Uint,
            "double" => Ty::Double,
            "string" | "lowerAscii" | "upperAscii" | "substring" | "trim" | "replace" | "join"
            | "charAt" | "format" | "quote" | "find" => Ty::String,
            "bytes" => Ty::Bytes,
            "duration" => Ty::Duration,
            "timestamp" => Ty::Timestamp,
            "split" | "findAll" => Ty::List(Box::new(Ty::String)),
            operators::CONDITIONAL => args.get(1).map_or(Ty::Dyn, |a| a.ty.clone()),
            operators::ADD
            | operators::SUBSTRACT
            | operators::MULTIPLY
            | operators::DIVIDE
            | operators::MODULO
            | operators::NEGATE => args.first().map_or(Ty::Dyn, |a| a.ty.clone()),
            operators::INDEX => args.first().map_or(Ty::Dyn, |a| a.ty.element()),
            _ => Ty::Dyn,
        }
    }

    fn size_or_unknown(&self, e: &IdedExpr) -> Estimate {
        self.compute_size(e).unwrap_or(Estimate::UNKNOWN)
    }

    fn compute_size(&self, e: &IdedExpr) -> Option<Estimate> {
        if let Some(size) = self.sizes.get(&e.id) {
            return Some(*size);
        }
        if let Some(size) = expression_size(e) {
            return Some(size);
        }
        let mut path = self.path(e);
        if path.first().is_some_and(|p| is_accumulator(p)) {
            path.clear();
        }
        if let Some(size) = self.estimate_size(&path) {
            return Some(size);
        }
        if self.ty(e).is_scalar() {
            return Some(Estimate::fixed(1));
        }
        if let Expr::Ident(name) = &e.expr
            && let Some(size) = self.local(name).and_then(|v| v.size)
        {
            return Some(size);
        }
        None
    }

    fn compute_entry_size(&self, e: &IdedExpr) -> Option<EntrySize> {
        if let Some(size) = self.entry_sizes.get(&e.id) {
            return Some(*size);
        }
        if let Expr::Ident(name) = &e.expr {
            return self.local(name).and_then(|v| v.entry_size);
        }
        None
    }

    /// Kubernetes' size estimator: the bound of the schema node at `path` (from `self`).
    fn estimate_size(&self, path: &[String]) -> Option<Estimate> {
        if path.is_empty() {
            return None;
        }
        let mut node = self.root;
        for name in &path[1..] {
            node = match name.as_str() {
                "@items" | "@values" => node.elem.as_deref()?,
                "@keys" => node.key.as_deref()?,
                field => node.fields.get(field)?,
            };
        }
        Some(Estimate {
            min: 0,
            max: node.max_elements.max(0) as u64,
        })
    }
}

fn equality_cost(lhs: Estimate, rhs: Estimate) -> Estimate {
    let smallest_max = lhs.max.min(rhs.max);
    let min = u64::from(smallest_max > 0);
    Estimate {
        min,
        max: smallest_max,
    }
    .by_factor(STRING_TRAVERSAL_COST_FACTOR)
}

fn expression_size(e: &IdedExpr) -> Option<Estimate> {
    let value = match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => s.inner().chars().count() as u64,
        Expr::Literal(LiteralValue::Bytes(b)) => b.inner().len() as u64,
        Expr::Literal(_) => 1,
        Expr::List(list) => list.elements.len() as u64,
        Expr::Map(map) => map.entries.len() as u64,
        _ => return None,
    };
    Some(Estimate::fixed(value))
}

fn literal_type<'a>(literal: &LiteralValue) -> Ty<'a> {
    match literal {
        LiteralValue::Boolean(_) => Ty::Bool,
        LiteralValue::Bytes(_) => Ty::Bytes,
        LiteralValue::Double(_) => Ty::Double,
        LiteralValue::Int(_) => Ty::Int,
        LiteralValue::Null => Ty::Null,
        LiteralValue::String(_) => Ty::String,
        LiteralValue::UInt(_) => Ty::Uint,
    }
}
