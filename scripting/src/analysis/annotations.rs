//! The LuaCATS annotations of the `spindle` module (`editor/spindle.lua`),
//! read as the documentation of each module function: what LuaLS users see
//! on hover, what notebook inspection shows, and what the language server
//! offers for functions it has no hand-written snippet for. One source, so
//! the prose is written once (`scripting/tests/annotations.rs` keeps the file
//! equal to the module).

/// The annotation file, compiled in.
pub const ANNOTATIONS: &str = include_str!("../../../editor/spindle.lua");

/// A module function as the annotations declare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotatedFunction {
    pub name: String,
    /// `name(arguments)`, as declared.
    pub signature: String,
    /// The `---` comment lines above the declaration, `---@` tags included.
    pub documentation: String,
}

/// Every `function spindle.NAME(...)` of the annotations, in file order.
pub fn module_functions() -> Vec<AnnotatedFunction> {
    let lines: Vec<&str> = ANNOTATIONS.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter_map(|(at, line)| {
            let rest = line.strip_prefix("function spindle.")?;
            let signature = rest.trim_end_matches(" end").to_owned();
            let name = signature.split('(').next()?.to_owned();
            let mut doc: Vec<&str> = lines[..at]
                .iter()
                .rev()
                .map_while(|line| line.strip_prefix("---"))
                .collect();
            doc.reverse();
            Some(AnnotatedFunction {
                name,
                signature,
                documentation: doc.join("\n"),
            })
        })
        .collect()
}

/// The documentation of module function `name`: its signature, then its
/// comment.
pub fn function_documentation(name: &str) -> Option<String> {
    let function = module_functions()
        .into_iter()
        .find(|function| function.name == name)?;
    Some(format!(
        "s.{}\n\n{}\n",
        function.signature, function.documentation
    ))
}
