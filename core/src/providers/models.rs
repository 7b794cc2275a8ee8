//! Per-provider allowlists of text-generation models, and the check a broker runs before it
//! uses its key: non-text model families (image, audio, video, embeddings, …) are refused even
//! when an allowlist names them.

use crate::providers::Provider;

/// Longest model name accepted, in bytes: in `/v1/ask`'s `params.models` and as a drop-in
/// request's `model`.
pub const MODEL_NAME_LIMIT: usize = 100;

const OPENAI: &[&str] = &[
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-5",
    "gpt-5-mini",
    "o3-mini",
    "o4-mini",
];

const ANTHROPIC: &[&str] = &[
    "claude-haiku-4-5",
    "claude-sonnet-4-5",
    "claude-opus-4-1",
    "claude-3-5-haiku-latest",
];

const GEMINI: &[&str] = &["gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash"];

const PERPLEXITY: &[&str] = &[
    "sonar",
    "sonar-pro",
    "sonar-reasoning",
    "sonar-reasoning-pro",
];

/// Case-insensitive substrings that mark a model as not a text-generation model, for every
/// provider.
const FORBIDDEN_PATTERNS: &[&str] = &[
    "image",
    "audio",
    "video",
    "vision",
    "embed", // also embedding
    "tts",
    "transcribe",
    "transcription",
    "whisper",
    "moderation",
    "dall-e",
    "dalle",
    "realtime",
    "speech",
];

/// Provider-specific non-text families whose names match none of the common patterns.
fn provider_patterns(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::OpenAi => &["sora"],
        Provider::Gemini => &["imagen", "veo", "lyria", "live"],
        Provider::Anthropic | Provider::Perplexity => &[],
    }
}

/// Why a model name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelRejection {
    /// The name belongs to a non-text family (image, audio, video, vision, embedding, TTS,
    /// transcription, moderation, realtime): refused even if an allowlist names it.
    Forbidden,
    /// The name is not on the provider's allowlist.
    NotAllowed,
}

impl ModelRejection {
    /// A short, human reason, safe to show a caller.
    pub fn reason(self) -> &'static str {
        match self {
            ModelRejection::Forbidden => "only text-generation models are served",
            ModelRejection::NotAllowed => "model is not on this provider's allowlist",
        }
    }
}

impl std::fmt::Display for ModelRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ModelRejection {}

/// The built-in allowlist of text-generation models for `provider`. A broker may be configured
/// with another list; [`check_model`] takes the list as an argument.
pub fn default_allowlist(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::OpenAi => OPENAI,
        Provider::Anthropic => ANTHROPIC,
        Provider::Gemini => GEMINI,
        Provider::Perplexity => PERPLEXITY,
    }
}

/// The non-text pattern that `model` matches, if any (case-insensitive substring).
pub fn forbidden_pattern(provider: Provider, model: &str) -> Option<&'static str> {
    let lower = model.to_ascii_lowercase();
    FORBIDDEN_PATTERNS
        .iter()
        .chain(provider_patterns(provider))
        .find(|p| lower.contains(*p))
        .copied()
}

/// Accepts `model` for `provider` only if it is on `allowlist` (exact, case-sensitive match,
/// as the providers spell model names) and matches no non-text pattern. The pattern check
/// comes first, so a listed image or audio model is still `Forbidden`.
pub fn check_model(
    provider: Provider,
    model: &str,
    allowlist: &[&str],
) -> Result<(), ModelRejection> {
    if forbidden_pattern(provider, model).is_some() {
        return Err(ModelRejection::Forbidden);
    }
    if model.is_empty() || !allowlist.contains(&model) {
        return Err(ModelRejection::NotAllowed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_model_is_accepted() {
        for p in Provider::ALL {
            let list = default_allowlist(p);
            assert!(!list.is_empty());
            for m in list {
                assert_eq!(check_model(p, m, list), Ok(()), "{p}/{m}");
            }
        }
    }

    #[test]
    fn each_provider_default_model_is_on_its_allowlist() {
        for p in Provider::ALL {
            assert!(default_allowlist(p).contains(&p.default_model()), "{p}");
        }
    }

    #[test]
    fn unlisted_model_is_not_allowed() {
        let list = default_allowlist(Provider::OpenAi);
        assert_eq!(
            check_model(Provider::OpenAi, "gpt-3.5-turbo", list),
            Err(ModelRejection::NotAllowed)
        );
        assert_eq!(
            check_model(Provider::OpenAi, "", list),
            Err(ModelRejection::NotAllowed)
        );
        assert_eq!(
            check_model(
                Provider::Anthropic,
                "claude-sonnet-4-5-20250929",
                default_allowlist(Provider::Anthropic)
            ),
            Err(ModelRejection::NotAllowed)
        );
    }

    #[test]
    fn allowlist_match_is_case_sensitive() {
        let list = default_allowlist(Provider::OpenAi);
        assert_eq!(
            check_model(Provider::OpenAi, "GPT-4o", list),
            Err(ModelRejection::NotAllowed)
        );
    }

    #[test]
    fn another_providers_model_is_not_allowed() {
        assert_eq!(
            check_model(
                Provider::Gemini,
                "gpt-4o",
                default_allowlist(Provider::Gemini)
            ),
            Err(ModelRejection::NotAllowed)
        );
    }

    #[test]
    fn non_text_models_are_forbidden_even_when_listed() {
        let cases = [
            (Provider::OpenAi, "gpt-image-1"),
            (Provider::OpenAi, "dall-e-3"),
            (Provider::OpenAi, "gpt-4o-audio-preview"),
            (Provider::OpenAi, "gpt-4o-realtime-preview"),
            (Provider::OpenAi, "gpt-4o-mini-tts"),
            (Provider::OpenAi, "tts-1-hd"),
            (Provider::OpenAi, "gpt-4o-transcribe"),
            (Provider::OpenAi, "whisper-1"),
            (Provider::OpenAi, "text-embedding-3-small"),
            (Provider::OpenAi, "omni-moderation-latest"),
            (Provider::OpenAi, "sora-2"),
            (Provider::OpenAi, "gpt-4-vision-preview"),
            (Provider::Gemini, "gemini-embedding-001"),
            (Provider::Gemini, "gemini-2.5-flash-image"),
            (Provider::Gemini, "gemini-2.5-flash-preview-tts"),
            (Provider::Gemini, "imagen-4.0-generate-001"),
            (Provider::Gemini, "veo-3.0-generate-001"),
            (Provider::Gemini, "gemini-2.0-flash-live-001"),
            (Provider::Gemini, "gemini-2.5-flash-native-audio-preview"),
            (Provider::Anthropic, "claude-VIDEO-x"),
            (Provider::Perplexity, "sonar-Embed"),
        ];
        for (p, m) in cases {
            assert_eq!(
                check_model(p, m, &[m]),
                Err(ModelRejection::Forbidden),
                "{p}/{m}"
            );
            assert!(forbidden_pattern(p, m).is_some());
        }
    }

    #[test]
    fn forbidden_wins_over_not_allowed() {
        assert_eq!(
            check_model(Provider::OpenAi, "text-embedding-3-large", &[]),
            Err(ModelRejection::Forbidden)
        );
    }

    #[test]
    fn text_model_names_match_no_forbidden_pattern() {
        for p in Provider::ALL {
            for m in default_allowlist(p) {
                assert_eq!(forbidden_pattern(p, m), None, "{p}/{m}");
            }
        }
    }

    #[test]
    fn custom_allowlist_is_honoured() {
        assert_eq!(
            check_model(
                Provider::Perplexity,
                "sonar-deep-research",
                &["sonar-deep-research"]
            ),
            Ok(())
        );
        assert_eq!(
            check_model(Provider::Perplexity, "sonar", &["sonar-deep-research"]),
            Err(ModelRejection::NotAllowed)
        );
    }
}
