//! The prompt the CLI gets: the prompt file (the Task's `/workspace/task.md`), then the list of
//! the workspace's other files, which the agent reads as it needs them.

use std::path::{Path, PathBuf};

/// Most files listed.
const MAX_LISTED: usize = 200;
/// Deepest directory level searched.
const MAX_DEPTH: usize = 6;

/// The prompt, or why there is none.
pub fn build(prompt_file: &Path, workspace: &Path, list_files: bool) -> Result<String, String> {
    let text = std::fs::read_to_string(prompt_file).map_err(|error| {
        format!(
            "cannot read the prompt {}: {error} (give the Task a context at that path, or set KUBETASK_PROMPT_FILE)",
            prompt_file.display()
        )
    })?;
    if text.trim().is_empty() {
        return Err(format!("the prompt {} is empty", prompt_file.display()));
    }
    let mut prompt = text.trim_end().to_owned();
    if !list_files {
        return Ok(prompt);
    }
    let mut files = Vec::new();
    let mut checkouts = Vec::new();
    collect(workspace, 0, &mut files, &mut checkouts);
    files.retain(|file| file != prompt_file);
    files.sort();
    checkouts.sort();
    for checkout in &checkouts {
        prompt.push_str(&format!(
            "\n\nThe repository is checked out at {} (a git working tree).",
            checkout.display()
        ));
    }
    if files.is_empty() {
        return Ok(prompt);
    }
    prompt.push_str("\n\nFiles provided for this task (read them as you need them):\n");
    for file in files.iter().take(MAX_LISTED) {
        prompt.push_str(&format!("- {}\n", file.display()));
    }
    if files.len() > MAX_LISTED {
        prompt.push_str(&format!(
            "- ... and {} more under {}\n",
            files.len() - MAX_LISTED,
            workspace.display()
        ));
    }
    Ok(prompt)
}

/// Regular files under `dir`, skipping hidden entries (`.git`, and the `..data` links of
/// ConfigMap volumes); a git working tree (the workspace's checkout) is named in `checkouts`,
/// not listed file by file.
fn collect(dir: &Path, depth: usize, files: &mut Vec<PathBuf>, checkouts: &mut Vec<PathBuf>) {
    if depth > MAX_DEPTH || files.len() > MAX_LISTED * 2 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.join(".git").exists() {
            checkouts.push(path);
        } else if path.is_dir() {
            collect(&path, depth + 1, files, checkouts);
        } else if path.is_file() {
            files.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkout_is_named_not_listed() {
        let dir = tempfile::tempdir().expect("dir");
        let workspace = dir.path();
        std::fs::write(workspace.join("task.md"), "Update dependencies.\n").expect("write");
        std::fs::create_dir_all(workspace.join("repo/.git")).expect("mkdir");
        std::fs::create_dir_all(workspace.join("repo/src")).expect("mkdir");
        std::fs::write(workspace.join("repo/src/main.rs"), "fn main() {}").expect("write");
        let prompt = build(&workspace.join("task.md"), workspace, true).expect("prompt");
        assert!(
            prompt.contains(&format!(
                "The repository is checked out at {}",
                workspace.join("repo").display()
            )),
            "{prompt}"
        );
        assert!(!prompt.contains("main.rs"), "{prompt}");
    }

    #[test]
    fn the_prompt_lists_the_other_context_files() {
        let dir = tempfile::tempdir().expect("dir");
        let workspace = dir.path();
        std::fs::write(workspace.join("task.md"), "Update dependencies.\n").expect("write");
        std::fs::create_dir_all(workspace.join("configs")).expect("mkdir");
        std::fs::write(workspace.join("configs/app.yaml"), "a: 1").expect("write");
        std::fs::write(workspace.join("guide.md"), "be careful").expect("write");
        std::fs::create_dir_all(workspace.join(".git")).expect("mkdir");
        std::fs::write(workspace.join(".git/HEAD"), "x").expect("write");
        let prompt = build(&workspace.join("task.md"), workspace, true).expect("a prompt");
        assert!(
            prompt.starts_with("Update dependencies.\n\nFiles provided"),
            "{prompt}"
        );
        assert!(prompt.contains(&format!(
            "- {}",
            workspace.join("configs/app.yaml").display()
        )));
        assert!(prompt.contains("guide.md"));
        assert!(!prompt.contains("HEAD"), "{prompt}");
        assert!(
            !prompt.contains("- ") || !prompt.contains("task.md\n"),
            "{prompt}"
        );
        let bare = build(&workspace.join("task.md"), workspace, false).expect("a prompt");
        assert_eq!(bare, "Update dependencies.");
    }

    #[test]
    fn a_missing_or_empty_prompt_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        let error = build(&dir.path().join("task.md"), dir.path(), true).expect_err("missing");
        assert!(error.contains("KUBETASK_PROMPT_FILE"), "{error}");
        std::fs::write(dir.path().join("task.md"), "  \n").expect("write");
        let error = build(&dir.path().join("task.md"), dir.path(), true).expect_err("empty");
        assert!(error.contains("is empty"), "{error}");
    }
}
