//! The WebAssembly face of the renderer: exports [`crate::render_json`] through the WIT world
//! `kubetask:plugin/plugin`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "plugin",
});

use kubetask::plugin::host::{Level, log};
use kubetask::plugin::types::InvalidField;

struct DefaultRenderer;

impl Guest for DefaultRenderer {
    fn render(request: RenderRequest) -> Result<Draft, RenderError> {
        if request.draft.is_some() {
            return Err(RenderError::Internal(
                "the default renderer must be the first stage of the pipeline".to_owned(),
            ));
        }
        let settings = crate::Settings {
            default_agent_image: request.settings.default_agent_image,
        };
        match crate::render_json(&request.task, request.agent.as_deref(), &settings) {
            Ok(rendered) => {
                log(
                    Level::Debug,
                    &format!(
                        "rendered a Job with {} ConfigMap(s)",
                        rendered.config_maps.len()
                    ),
                );
                Ok(Draft {
                    job: rendered.job,
                    config_maps: rendered.config_maps,
                    warnings: rendered.warnings,
                })
            }
            Err(crate::RenderError::Invalid {
                object,
                field,
                message,
            }) => Err(RenderError::InvalidInput(InvalidField {
                object,
                field,
                message,
            })),
            Err(crate::RenderError::Internal(message)) => Err(RenderError::Internal(message)),
        }
    }
}

export!(DefaultRenderer);
