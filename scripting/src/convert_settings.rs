//! `s.settings { ... }` to a [`SettingsSpec`]: the run's own settings, each
//! the same as a `spindle run` flag (the flag wins when both are given).
//! Every mistake is a diagnostic located at the field it concerns.

use mlua::Value;

use crate::api::SettingsDecl;
use crate::convert::{Converter, Part};
use crate::spec::SettingsSpec;

/// The fields `s.settings` accepts.
pub(crate) const SETTINGS_FIELDS: &[&str] = &["journal"];

impl Converter<'_> {
    /// The settings of `decls` (the first declaration; a second one is
    /// reported where it is).
    pub(crate) fn settings(&mut self, decls: &[SettingsDecl]) -> SettingsSpec {
        let mut settings = SettingsSpec::default();
        let Some((first, others)) = decls.split_first() else {
            return settings;
        };
        for other in others {
            let position = self.locator.position(&first.site, None, Part::Key);
            self.error(
                &other.site,
                None,
                Part::Key,
                "s.settings is called twice".to_owned(),
                format!(
                    "first called at {}:{}:{}; put every setting in that one table",
                    first.site.file.display(),
                    position.line,
                    position.column
                ),
            );
        }
        let site = &first.site;
        self.check_fields(site, &first.table, "", SETTINGS_FIELDS, "s.settings");
        settings.journal = match first
            .table
            .raw_get::<Value>("journal")
            .unwrap_or(Value::Nil)
        {
            Value::Nil => None,
            Value::String(dir) if dir.as_bytes().is_empty() => {
                self.error(
                    site,
                    Some("journal"),
                    Part::Value,
                    "`journal` is empty".to_owned(),
                    "name the folder the journal goes to: journal = \"journal\" (relative paths \
                     start at the script's folder)"
                        .to_owned(),
                );
                None
            }
            Value::String(dir) => {
                let dir = self.script_dir.join(dir.to_string_lossy());
                if dir.exists() && !dir.is_dir() {
                    self.error(
                        site,
                        Some("journal"),
                        Part::Value,
                        format!("journal folder {} is a file", dir.display()),
                        "name a folder (it is created if missing), not a segment file".to_owned(),
                    );
                    None
                } else {
                    Some(dir)
                }
            }
            other => {
                self.wrong_type(site, "journal", "a string (a folder)", &other);
                None
            }
        };
        settings
    }
}
