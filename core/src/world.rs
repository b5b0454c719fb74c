//! Which WIT world a deployed component implements: it decides the URL a
//! function is called at and how the host calls it.

use serde::{Deserialize, Serialize};

/// The world a component implements, found at deploy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// Sluice's own `transform` (`wit/transform.wit`): bytes and parameters
    /// in, bytes out; called at `/v1/functions/{name}/invoke` and `/jobs`.
    /// Records from before worlds were recorded are all of this kind.
    #[default]
    Transform,
    /// A standard `wasi:http/proxy` component (it exports
    /// `wasi:http/incoming-handler`): called with any method at
    /// `/v1/functions/{name}/http/{path}`.
    Http,
}

impl World {
    /// Its name on the wire and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transform => "transform",
            Self::Http => "http",
        }
    }

    /// The path a caller calls a function of this world at.
    pub fn call_path(self, name: &str) -> String {
        match self {
            Self::Transform => format!("/v1/functions/{name}/invoke"),
            Self::Http => format!("/v1/functions/{name}/http/"),
        }
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for world in [World::Transform, World::Http] {
            assert_eq!(serde_json::to_string(&world).ok(), Some(format!("\"{world}\"")));
        }
    }
}
