//! Menu scripts for the bot: the TOML format, parsing, and validation.
//!
//! A script has a `start` state, a `fallback` reply for unknown input,
//! `exit_inputs` that end the call anywhere with the `goodbye` line, and
//! `[states.NAME]` tables, each with a `prompt`, an optional `fallback` of its
//! own, and `options`: `{ input, reply?, next? , exit? }`. An option either
//! moves to `next` (after its `reply`, if any) or, with `exit = true`, ends
//! the call.
//!
//! Everything is checked when the script is loaded, not when a caller trips
//! over it: unknown keys, a `start` or `next` naming no state, an option with
//! neither `next` nor `exit`, the same input twice in one state. Each error
//! names the file, the line and the reason.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

/// The built-in script: the course's 10086 flow in Chinese and English.
pub const BUILT_IN: &str = include_str!("10086.toml");

/// A script that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot read the bot script {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: line {line}: {reason}")]
    Invalid {
        origin: String,
        line: usize,
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptFile {
    start: Spanned<String>,
    fallback: String,
    #[serde(default)]
    exit_inputs: Vec<String>,
    #[serde(default)]
    goodbye: String,
    states: BTreeMap<String, Spanned<StateFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    prompt: String,
    fallback: Option<String>,
    #[serde(default)]
    options: Vec<Spanned<OptionFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionFile {
    input: String,
    #[serde(default)]
    reply: String,
    next: Option<Spanned<String>>,
    #[serde(default)]
    exit: bool,
}

/// What choosing an option does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Go to the state with this index.
    Goto(usize),
    /// End the call.
    Exit,
}

/// One option of a state, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub input: String,
    pub reply: String,
    pub step: Step,
}

/// One state, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub name: String,
    pub prompt: String,
    pub fallback: String,
    pub choices: Vec<Choice>,
}

/// A validated script: states are referred to by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub start: usize,
    pub states: Vec<State>,
    pub exit_inputs: Vec<String>,
    pub goodbye: String,
}

impl Script {
    /// The built-in 10086 script.
    pub fn built_in() -> Script {
        Script::parse(BUILT_IN, "built-in 10086 script").expect("the built-in script is valid")
    }

    /// Loads and validates a script file.
    ///
    /// # Errors
    /// [`ScriptError`] with the file, line and reason.
    pub fn load(path: &Path) -> Result<Script, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Script::parse(&text, &path.display().to_string())
    }

    /// Parses and validates a script; `origin` names it in errors.
    ///
    /// # Errors
    /// [`ScriptError::Invalid`] with the line and reason.
    pub fn parse(text: &str, origin: &str) -> Result<Script, ScriptError> {
        let invalid = |at: usize, reason: String| ScriptError::Invalid {
            origin: origin.to_owned(),
            line: text[..at.min(text.len())].matches('\n').count() + 1,
            reason,
        };
        let file: ScriptFile = toml::from_str(text).map_err(|err| {
            invalid(
                err.span().map_or(0, |span| span.start),
                err.message().replace('\n', " "),
            )
        })?;
        if file.states.is_empty() {
            return Err(invalid(0, "the script has no states".to_owned()));
        }
        let index: BTreeMap<&str, usize> = file
            .states
            .keys()
            .enumerate()
            .map(|(i, name)| (name.as_str(), i))
            .collect();
        let lookup = |name: &Spanned<String>| {
            index.get(name.get_ref().as_str()).copied().ok_or_else(|| {
                invalid(
                    name.span().start,
                    format!("no state named {:?}", name.get_ref()),
                )
            })
        };
        let start = lookup(&file.start)?;
        let mut states = Vec::with_capacity(file.states.len());
        for (name, state) in &file.states {
            let mut choices: Vec<Choice> = Vec::new();
            for option in &state.get_ref().options {
                let at = option.span().start;
                let option = option.get_ref();
                let input = option.input.trim().to_owned();
                if input.is_empty() {
                    return Err(invalid(
                        at,
                        format!("state {name:?}: an option has an empty input"),
                    ));
                }
                if choices.iter().any(|c| c.input == input) {
                    return Err(invalid(
                        at,
                        format!("state {name:?}: input {input:?} appears twice"),
                    ));
                }
                let step = match (&option.next, option.exit) {
                    (Some(next), false) => Step::Goto(lookup(next)?),
                    (None, true) => Step::Exit,
                    (Some(_), true) => {
                        return Err(invalid(
                            at,
                            format!("state {name:?}: option {input:?} has both `next` and `exit`"),
                        ));
                    }
                    (None, false) => {
                        return Err(invalid(
                            at,
                            format!(
                                "state {name:?}: option {input:?} needs `next` or `exit = true`"
                            ),
                        ));
                    }
                };
                choices.push(Choice {
                    input,
                    reply: option.reply.clone(),
                    step,
                });
            }
            states.push(State {
                name: name.clone(),
                prompt: state.get_ref().prompt.trim_start_matches('\n').to_owned(),
                fallback: state
                    .get_ref()
                    .fallback
                    .clone()
                    .unwrap_or_else(|| file.fallback.clone()),
                choices,
            });
        }
        Ok(Script {
            start,
            states,
            exit_inputs: file
                .exit_inputs
                .iter()
                .map(|s| s.trim().to_owned())
                .collect(),
            goodbye: file.goodbye,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_script_has_both_languages() {
        let script = Script::built_in();
        let names: Vec<&str> = script.states.iter().map(|s| s.name.as_str()).collect();
        assert!(
            names.contains(&"zh_main") && names.contains(&"en_main"),
            "{names:?}"
        );
        assert_eq!(script.states[script.start].name, "language");
    }

    fn error_of(text: &str) -> String {
        Script::parse(text, "menu.toml").unwrap_err().to_string()
    }

    const HEAD: &str = "start = \"a\"\nfallback = \"?\"\n";

    #[test]
    fn a_next_naming_no_state_is_reported_at_its_line() {
        let text = format!(
            "{HEAD}[states.a]\nprompt = \"p\"\noptions = [\n  {{ input = \"1\", next = \"nowhere\" }},\n]\n"
        );
        assert_eq!(
            error_of(&text),
            "menu.toml: line 6: no state named \"nowhere\""
        );
    }

    #[test]
    fn a_missing_start_state_is_reported() {
        let text = "start = \"b\"\nfallback = \"?\"\n[states.a]\nprompt = \"p\"\n";
        assert_eq!(error_of(text), "menu.toml: line 1: no state named \"b\"");
    }

    #[test]
    fn duplicate_inputs_and_dead_ends_are_reported() {
        let twice = format!(
            "{HEAD}[states.a]\nprompt = \"p\"\noptions = [\n {{ input = \"1\", next = \"a\" }},\n {{ input = \"1\", next = \"a\" }},\n]\n"
        );
        assert_eq!(
            error_of(&twice),
            "menu.toml: line 7: state \"a\": input \"1\" appears twice"
        );
        let dead_end =
            format!("{HEAD}[states.a]\nprompt = \"p\"\noptions = [ {{ input = \"1\" }} ]\n");
        assert!(error_of(&dead_end).contains("needs `next` or `exit = true`"));
    }

    #[test]
    fn unknown_keys_and_bad_toml_name_the_line() {
        let unknown = format!("{HEAD}[states.a]\nprompt = \"p\"\ncolour = \"red\"\n");
        let err = error_of(&unknown);
        assert!(
            err.starts_with("menu.toml: line 5: unknown field `colour`"),
            "{err}"
        );
        let broken = format!("{HEAD}[states.a\n");
        assert!(
            error_of(&broken).starts_with("menu.toml: line 3: "),
            "{}",
            error_of(&broken)
        );
    }
}
