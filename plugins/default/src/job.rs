//! Assembly of the Job (and the ConfigMap of inline contexts) from validated parts.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        batch::v1::{Job, JobSpec},
        core::v1::{
            ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar,
            ImageVolumeSource, KeyToPath, PodSpec, PodTemplateSpec, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kubetask_api::workspace::{HANDOFF_DIR, HANDOFF_ENV};
use kubetask_api::{PodScheduling, Task, naming, ownership};

use crate::{
    contexts::{ContextSource, PlacedContext, TOOLS, WORKSPACE},
    credentials::CredentialMounts,
};

/// Name of the agent container.
pub const AGENT_CONTAINER: &str = "agent";
/// `PATH` of the agent container when a tools image is mounted: `/tools/bin` first, then the
/// conventional default of container images (the image's own `PATH` cannot be read from here).
pub const TOOLS_PATH: &str =
    "/tools/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The agent runner's variable naming the directory the CLI runs in (the checkout).
pub const WORKDIR_ENV: &str = "KUBETASK_WORKDIR";
/// File name of a `configMapKeyRef` context inside its volume (mounted with `subPath`).
const KEY_FILE: &str = "content";
const WORKSPACE_VOLUME: &str = "workspace";
const INLINE_VOLUME: &str = "contexts";
const TOOLS_VOLUME: &str = "tools";

/// Everything the Job is made of, already validated.
pub(crate) struct JobParts<'a> {
    pub task: &'a Task,
    pub namespace: &'a str,
    pub job_name: String,
    pub image: String,
    pub tools_image: Option<&'a str>,
    pub contexts: Vec<PlacedContext<'a>>,
    pub credentials: CredentialMounts,
    pub pod_labels: BTreeMap<String, String>,
    pub scheduling: Option<&'a PodScheduling>,
    pub service_account_name: Option<&'a str>,
    /// The workspace's clone and setup steps, when there is a workspace.
    pub workspace: Option<crate::workspace::WorkspaceSteps>,
}

/// The pod's `/workspace` volume as the steps mount it.
pub(crate) fn workspace_mount() -> VolumeMount {
    VolumeMount {
        name: WORKSPACE_VOLUME.to_owned(),
        mount_path: WORKSPACE.to_owned(),
        ..VolumeMount::default()
    }
}

/// Builds the Job and, when there are inline contexts, the ConfigMap holding them.
pub(crate) fn assemble(parts: JobParts<'_>) -> (Job, Option<ConfigMap>) {
    let labels = ownership::task_labels(parts.task);
    let metadata = |name: String| ObjectMeta {
        name: Some(name),
        namespace: Some(parts.namespace.to_owned()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![ownership::controller_owner_reference(parts.task)]),
        ..ObjectMeta::default()
    };

    let mut volumes = vec![Volume {
        name: WORKSPACE_VOLUME.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    let mut mounts = vec![workspace_mount()];

    let config_map_name = naming::contexts_config_map_name(&parts.job_name);
    let mut inline_data = BTreeMap::new();
    for (index, context) in parts.contexts.iter().enumerate() {
        let read_only = Some(true);
        match &context.source {
            ContextSource::Inline(content) => {
                let key = inline_key(index, &context.path);
                mounts.push(VolumeMount {
                    name: INLINE_VOLUME.to_owned(),
                    mount_path: context.path.clone(),
                    sub_path: Some(key.clone()),
                    read_only,
                    ..VolumeMount::default()
                });
                inline_data.insert(key, (*content).to_owned());
            }
            ContextSource::ConfigMapKey(selector) => {
                let name = format!("context-{index}");
                volumes.push(Volume {
                    name: name.clone(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: selector.name.clone(),
                        items: Some(vec![KeyToPath {
                            key: selector.key.clone(),
                            path: KEY_FILE.to_owned(),
                            mode: None,
                        }]),
                        optional: selector.optional,
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                });
                mounts.push(VolumeMount {
                    name,
                    mount_path: context.path.clone(),
                    sub_path: Some(KEY_FILE.to_owned()),
                    read_only,
                    ..VolumeMount::default()
                });
            }
            ContextSource::ConfigMapDirectory(reference) => {
                let name = format!("context-{index}");
                volumes.push(Volume {
                    name: name.clone(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: reference.name.clone(),
                        optional: reference.optional,
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                });
                mounts.push(VolumeMount {
                    name,
                    mount_path: context.path.clone(),
                    read_only,
                    ..VolumeMount::default()
                });
            }
        }
    }
    let config_map = (!inline_data.is_empty()).then(|| {
        volumes.insert(
            1,
            Volume {
                name: INLINE_VOLUME.to_owned(),
                config_map: Some(ConfigMapVolumeSource {
                    name: config_map_name.clone(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
        );
        ConfigMap {
            metadata: metadata(config_map_name),
            data: Some(inline_data),
            ..ConfigMap::default()
        }
    });

    let task_name = parts.task.metadata.name.clone().unwrap_or_default();
    let mut env = vec![
        plain_env("TASK_NAME", task_name),
        plain_env("TASK_NAMESPACE", parts.namespace.to_owned()),
    ];
    env.extend(parts.credentials.env);
    volumes.extend(parts.credentials.volumes);
    mounts.extend(parts.credentials.mounts);
    if let Some(tools_image) = parts.tools_image {
        volumes.push(Volume {
            name: TOOLS_VOLUME.to_owned(),
            image: Some(ImageVolumeSource {
                reference: Some(tools_image.to_owned()),
                pull_policy: Some(crate::image::pull_policy(tools_image).to_owned()),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: TOOLS_VOLUME.to_owned(),
            mount_path: TOOLS.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        env.push(plain_env("PATH", TOOLS_PATH.to_owned()));
    }

    let (init_containers, working_dir, publish) = match parts.workspace {
        Some(steps) => {
            volumes.extend(steps.volumes);
            // The agent runner (docs/agents.md) runs the CLI there and, when the workspace
            // publishes, leaves its exit for the publish step.
            env.push(plain_env(WORKDIR_ENV, steps.directory.clone()));
            if steps.publish.is_some() {
                env.push(plain_env(HANDOFF_ENV, HANDOFF_DIR.to_owned()));
            }
            (Some(steps.init_containers), steps.directory, steps.publish)
        }
        None => (None, WORKSPACE.to_owned(), None),
    };
    let mut pod_labels = parts.pod_labels;
    pod_labels.extend(labels.clone());
    let scheduling = parts.scheduling.cloned().unwrap_or_default();
    let pull_policy = crate::image::pull_policy(&parts.image).to_owned();
    let job = Job {
        metadata: metadata(parts.job_name),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    service_account_name: parts.service_account_name.map(str::to_owned),
                    init_containers,
                    containers: vec![Container {
                        name: AGENT_CONTAINER.to_owned(),
                        image: Some(parts.image),
                        image_pull_policy: Some(pull_policy),
                        working_dir: Some(working_dir),
                        env: Some(env),
                        volume_mounts: Some(mounts),
                        ..Container::default()
                    }]
                    .into_iter()
                    .chain(publish)
                    .collect(),
                    volumes: Some(volumes),
                    node_selector: (!scheduling.node_selector.is_empty())
                        .then_some(scheduling.node_selector),
                    tolerations: (!scheduling.tolerations.is_empty())
                        .then(|| scheduling.tolerations.into_iter().map(Into::into).collect()),
                    affinity: scheduling.affinity,
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    };
    (job, config_map)
}

fn plain_env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    }
}

/// Key of an inline context in the generated ConfigMap: its position (unique) and its file
/// name (readable), reduced to the characters a ConfigMap key allows.
fn inline_key(index: usize, path: &str) -> String {
    let base: String = crate::paths::base_name(path)
        .chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{index}-{base}")
}
