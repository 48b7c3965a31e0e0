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

/// The documentation of module function `name` as plain text (notebook
/// inspection, `s.help`): its signature, its prose, then its parameters and
/// what it returns, read from the `---@` tags.
pub fn function_documentation(name: &str) -> Option<String> {
    let function = module_functions()
        .into_iter()
        .find(|function| function.name == name)?;
    let mut prose = Vec::new();
    let mut parameters = Vec::new();
    let mut rest = Vec::new();
    for line in function.documentation.lines() {
        if let Some(tag) = line.strip_prefix("@param ") {
            let (name, tail) = tag.split_once(' ').unwrap_or((tag, ""));
            let (kind, about) = split_type(tail);
            let (name, optional) = match name.strip_suffix('?') {
                Some(name) => (name, " (optional)"),
                None => (name, ""),
            };
            let about = after(" — ", about);
            parameters.push(format!("  {name}{optional}: {kind}{about}"));
        } else if let Some(tag) = line.strip_prefix("@return ") {
            let (kind, about) = split_type(tag);
            rest.push(format!("Returns: {kind}{}", after(" ", about)));
        } else if let Some(tag) = line.strip_prefix("@overload ") {
            rest.push(format!("Also: {tag}"));
        } else {
            prose.push(line);
        }
    }
    let mut text = format!("s.{}\n\n{}\n", function.signature, prose.join("\n"));
    if !parameters.is_empty() {
        text.push_str(&format!("\nParameters:\n{}\n", parameters.join("\n")));
    }
    if !rest.is_empty() {
        text.push_str(&format!("\n{}\n", rest.join("\n")));
    }
    Some(text)
}

/// `text` after `separator`, or nothing when there is no text.
fn after(separator: &str, text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("{separator}{text}")
    }
}

/// Splits a tag's text into its type and what follows: the type ends at
/// the first space outside parentheses (`(fun(a: T): U)? name` → the
/// function type, then `name`).
fn split_type(text: &str) -> (&str, &str) {
    let mut depth = 0usize;
    for (at, c) in text.char_indices() {
        match c {
            '(' | '<' => depth += 1,
            ')' | '>' => depth = depth.saturating_sub(1),
            ' ' if depth == 0 => return (&text[..at], text[at + 1..].trim()),
            _ => {}
        }
    }
    (text, "")
}
