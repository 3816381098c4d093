//! A queue's announcements (`docs/behaviour.md`, Announcements): the keys, and the sentences
//! rgsd speaks for positions and expected waits, rendered once at load time like every other
//! text prompt, in the queue's language.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::{Compiler, join};
use crate::config::model::{Announcements, Periodic, Prompt, PromptId, PromptSource, WaitBucket};
use crate::config::raw::RawQueue;

/// Two announcements to one caller are at least this far apart.
pub(crate) const ANNOUNCE_EVERY: RangeInclusive<Duration> =
    Duration::from_secs(15)..=Duration::from_secs(3600);
const POSITION_LIMIT: RangeInclusive<i64> = 1..=100;
const POSITION_LIMIT_DEFAULT: u32 = 10;

/// The wording of one language: built-in, so announcements work without any prompt written.
struct Wording {
    position: fn(u32) -> String,
    beyond: fn(u32) -> String,
    wait: fn(WaitBucket) -> String,
}

fn wording(language: &str) -> Option<Wording> {
    let primary = language.split(['-', '_']).next()?.to_ascii_lowercase();
    Some(match primary.as_str() {
        "en" => Wording {
            position: |p| format!("You are number {p} in the queue."),
            beyond: |l| format!("There are more than {l} callers ahead of you."),
            wait: |w| match w {
                WaitBucket::UnderAMinute => "Your expected wait is less than one minute.".into(),
                WaitBucket::Minutes(1) => "Your expected wait is about one minute.".into(),
                WaitBucket::Minutes(m) => format!("Your expected wait is about {m} minutes."),
                WaitBucket::OverAnHour => "Your expected wait is more than one hour.".into(),
            },
        },
        "fr" => Wording {
            position: |p| format!("Vous êtes numéro {p} dans la file d'attente."),
            beyond: |l| format!("Plus de {l} appelants sont avant vous."),
            wait: |w| match w {
                WaitBucket::UnderAMinute => "Votre attente est de moins d'une minute.".into(),
                WaitBucket::Minutes(1) => "Votre attente est d'environ une minute.".into(),
                WaitBucket::Minutes(m) => format!("Votre attente est d'environ {m} minutes."),
                WaitBucket::OverAnHour => "Votre attente est de plus d'une heure.".into(),
            },
        },
        "de" => Wording {
            position: |p| format!("Sie sind Nummer {p} in der Warteschlange."),
            beyond: |l| format!("Vor Ihnen warten mehr als {l} Anrufer."),
            wait: |w| match w {
                WaitBucket::UnderAMinute => {
                    "Ihre Wartezeit beträgt weniger als eine Minute.".into()
                }
                WaitBucket::Minutes(1) => "Ihre Wartezeit beträgt etwa eine Minute.".into(),
                WaitBucket::Minutes(m) => format!("Ihre Wartezeit beträgt etwa {m} Minuten."),
                WaitBucket::OverAnHour => "Ihre Wartezeit beträgt mehr als eine Stunde.".into(),
            },
        },
        "es" => Wording {
            position: |p| format!("Usted es el número {p} en la cola."),
            beyond: |l| format!("Hay más de {l} personas delante de usted."),
            wait: |w| match w {
                WaitBucket::UnderAMinute => "Su tiempo de espera es de menos de un minuto.".into(),
                WaitBucket::Minutes(1) => {
                    "Su tiempo de espera es de un minuto aproximadamente.".into()
                }
                WaitBucket::Minutes(m) => {
                    format!("Su tiempo de espera es de {m} minutos aproximadamente.")
                }
                WaitBucket::OverAnHour => "Su tiempo de espera es de más de una hora.".into(),
            },
        },
        _ => return None,
    })
}

impl Compiler<'_> {
    /// A built-in text prompt (deduplicated like the others).
    fn spoken(&mut self, text: String, language: &str) -> PromptId {
        let prompt = Prompt {
            source: PromptSource::Text(text),
            language: language.to_owned(),
        };
        if let Some(existing) = self.prompt_ids.get(&prompt) {
            return *existing;
        }
        let new = PromptId(super::id(self.prompts.len()));
        self.prompts.push(prompt.clone());
        self.prompt_ids.insert(prompt, new);
        new
    }

    /// The announcement keys of queue `key`; `None` after an error (reported).
    pub(super) fn announcements(
        &mut self,
        q: &RawQueue,
        key: &str,
        span: &std::ops::Range<usize>,
        language: &str,
    ) -> Option<Announcements> {
        let mut ok = true;
        let every = match &q.announce_every {
            None => None,
            Some(v) => {
                let every =
                    self.duration(Some(v), &join(key, "announce_every"), &ANNOUNCE_EVERY, None);
                ok &= every.is_some();
                every
            }
        };
        let flag = |f: &Option<toml::Spanned<bool>>| f.as_ref().is_none_or(|b| *b.get_ref());
        let (position, wait) = (flag(&q.announce_position), flag(&q.announce_wait));
        if q.announce_every.is_none() {
            for (name, set) in [
                (
                    "announce_position",
                    q.announce_position.as_ref().map(|b| b.span()),
                ),
                ("announce_wait", q.announce_wait.as_ref().map(|b| b.span())),
                (
                    "announce_position_limit",
                    q.announce_position_limit.as_ref().map(|b| b.span()),
                ),
            ] {
                if let Some(s) = set {
                    self.warn(
                        &s,
                        &join(key, name),
                        "has no effect without announce_every (announcements are off)",
                    );
                }
            }
        } else if !position && !wait {
            self.error(
                span,
                &join(key, "announce_every"),
                "announce_position and announce_wait are both false: nothing to announce; remove announce_every or set one of them",
            );
            ok = false;
        }
        let limit = match &q.announce_position_limit {
            None => Some(POSITION_LIMIT_DEFAULT),
            Some(v) => self.integer(v, &join(key, "announce_position_limit"), &POSITION_LIMIT),
        };
        ok &= limit.is_some();
        let periodic = match &q.periodic_announcement {
            None => None,
            Some(p) => {
                let p_key = join(key, "periodic_announcement");
                let pv = p.get_ref();
                let every = self
                    .required(&pv.every, &p.span(), &p_key, "every")
                    .and_then(|e| {
                        self.duration(Some(e), &join(&p_key, "every"), &ANNOUNCE_EVERY, None)
                    });
                let prompt = self
                    .required(&pv.prompt, &p.span(), &p_key, "prompt")
                    .and_then(|raw| self.prompt(raw, &join(&p_key, "prompt"), language));
                match (every, prompt) {
                    (Some(every), Some(prompt)) => Some(Periodic { every, prompt }),
                    _ => {
                        ok = false;
                        None
                    }
                }
            }
        };
        if !ok {
            return None;
        }
        let mut out = Announcements {
            every,
            periodic,
            ..Announcements::default()
        };
        if every.is_none() {
            return Some(out);
        }
        let Some(words) = wording(language) else {
            let v = q.announce_every.as_ref().map_or(span.clone(), |v| v.span());
            self.error(
                &v,
                &join(key, "announce_every"),
                format!(
                    "rgsd has no built-in wording for announcements in \"{language}\" (it has en, fr, de and es); set the queue's language to one of those"
                ),
            );
            return None;
        };
        if self.first_text_prompt.is_none()
            && let Some(v) = &q.announce_every
        {
            self.first_text_prompt = Some((v.span(), join(key, "announce_every")));
        }
        if position {
            let limit = limit.unwrap_or(POSITION_LIMIT_DEFAULT);
            for p in 1..=limit {
                let id = self.spoken((words.position)(p), language);
                out.position.push(id);
            }
            let id = self.spoken((words.beyond)(limit), language);
            out.position.push(id);
        }
        if wait {
            for bucket in WaitBucket::all() {
                let id = self.spoken((words.wait)(bucket), language);
                out.wait.push(id);
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(queue_keys: &str) -> crate::config::model::Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rgsd.toml");
        let text = format!(
            "[server]\nsip_listen = [\"udp:127.0.0.1:5060\"]\nadvertised_host = \"127.0.0.1\"\ndatabase = \"sqlite://rgsd.db\"\ntrusted_peers = [\"127.0.0.0/8\"]\n\
             [[agent_group]]\nname = \"G\"\nagents = [\"sip:a@127.0.0.1\"]\n\
             [[queue]]\nname = \"Q\"\nagent_groups = [\"G\"]\n{queue_keys}\n\
             [[workflow]]\nname = \"W\"\nkind = \"hunt_group\"\nuri = \"sip:w@127.0.0.1\"\nqueue = \"Q\"\nlanguage = \"fr-FR\"\n"
        );
        std::fs::write(&path, text).unwrap();
        let options = crate::config::LoadOptions {
            check_environment: false,
        };
        crate::config::load(&path, &options)
            .unwrap_or_else(|d| panic!("{d:?}"))
            .config
    }

    #[test]
    fn off_by_default_and_rendered_in_the_queues_language_when_on() {
        assert!(!load("").queues[0].announce.any());
        let config = load("announce_every = \"30s\"\nannounce_position_limit = 3\n");
        let a = &config.queues[0].announce;
        assert_eq!(a.every, Some(Duration::from_secs(30)));
        assert_eq!(a.position.len(), 4, "positions 1 to 3, then beyond");
        assert_eq!(a.wait.len(), WaitBucket::all().count());
        let text = |id: PromptId| match &config.prompts[id.0 as usize] {
            Prompt {
                source: PromptSource::Text(t),
                language,
            } => (t.clone(), language.clone()),
            other => panic!("{other:?}"),
        };
        let (second, language) = text(a.position_prompt(2).unwrap());
        assert_eq!(
            language, "fr-FR",
            "the language of the workflow using the queue"
        );
        assert!(second.contains("numéro 2"), "{second}");
        assert!(text(a.position_prompt(9).unwrap()).0.contains("Plus de 3"));
        let (wait, _) = text(a.wait_prompt(WaitBucket::Minutes(15)).unwrap());
        assert!(wait.contains("15 minutes"), "{wait}");
        let positions_only = load("announce_every = \"30s\"\nannounce_wait = false\n");
        assert!(positions_only.queues[0].announce.wait.is_empty());
    }

    #[test]
    fn waits_round_to_the_step_nearest() {
        let b = |s: u64| WaitBucket::of(Duration::from_secs(s));
        assert_eq!(b(0), WaitBucket::UnderAMinute);
        assert_eq!(b(44), WaitBucket::UnderAMinute);
        assert_eq!(b(45), WaitBucket::Minutes(1));
        assert_eq!(
            b(150),
            WaitBucket::Minutes(2),
            "2.5 min: the first of two equally near"
        );
        assert_eq!(b(12 * 60), WaitBucket::Minutes(10));
        assert_eq!(b(13 * 60), WaitBucket::Minutes(15));
        assert_eq!(b(65 * 60), WaitBucket::Minutes(60));
        assert_eq!(b(65 * 60 + 1), WaitBucket::OverAnHour);
        for (i, bucket) in WaitBucket::all().enumerate() {
            assert_eq!(bucket.index(), i);
        }
    }

    #[test]
    fn every_language_words_every_bucket() {
        for language in ["en-US", "en-GB", "fr-FR", "de-DE", "es-ES"] {
            let w = wording(language).unwrap();
            assert!((w.position)(3).contains('3'));
            assert!((w.beyond)(10).contains("10"));
            let texts: Vec<String> = WaitBucket::all().map(|b| (w.wait)(b)).collect();
            let mut unique = texts.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(
                unique.len(),
                texts.len(),
                "{language}: one sentence per bucket"
            );
        }
        assert!(wording("ja-JP").is_none());
    }
}
