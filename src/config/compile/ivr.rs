//! Prompts, call actions and IVR questions: where each action may go, how questions nest and
//! flatten into [`Workflow::questions`](crate::config::model::Workflow::questions).

use super::*;

/// Where an action sits, which decides the targets it may have.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    OutOfHours,
    OnHoliday,
    /// A queue's timeout; the queue itself.
    QueueTimeout(QueueId),
    /// A queue's overflow; the queue itself.
    QueueOverflow(QueueId),
    /// An answer of an interactive workflow's question at this level (1 = top).
    Answer(u32),
}

impl Place {
    fn describe(self) -> &'static str {
        match self {
            Self::OutOfHours => "out_of_hours",
            Self::OnHoliday => "on_holiday",
            Self::QueueTimeout(_) => "a queue timeout",
            Self::QueueOverflow(_) => "a queue overflow",
            Self::Answer(_) => "an answer",
        }
    }
}

/// The IVR tree of the workflow being compiled; a slot is `None` until its question compiled.
pub(super) struct Ivr {
    pub(super) questions: Vec<Option<Question>>,
}

impl Compiler<'_> {
    // ---- prompts -----------------------------------------------------------------------

    /// A prompt, deduplicated by (source, language).
    pub(super) fn prompt(
        &mut self,
        raw: &Spanned<RawPrompt>,
        key: &str,
        language: &str,
    ) -> Option<PromptId> {
        let p = raw.get_ref();
        let source = match (&p.text, &p.file) {
            (Some(_), Some(_)) => {
                self.error(
                    &raw.span(),
                    key,
                    "a prompt is either { text = \"…\" } or { file = \"…\" }, not both",
                );
                return None;
            }
            (None, None) => {
                self.error(
                    &raw.span(),
                    key,
                    "a prompt needs text = \"…\" (spoken by text-to-speech) or file = \"…\" (a WAV file)",
                );
                return None;
            }
            (Some(text), None) => {
                let text_key = join(key, "text");
                let chars = text.get_ref().chars().count();
                if text.get_ref().trim().is_empty() {
                    self.error(&text.span(), &text_key, "the prompt text is empty");
                    return None;
                }
                if chars > TEXT_PROMPT_MAX_CHARS {
                    self.error(
                        &text.span(),
                        &text_key,
                        format!(
                            "the prompt text has {chars} characters; at most {TEXT_PROMPT_MAX_CHARS} are allowed"
                        ),
                    );
                    return None;
                }
                if self.first_text_prompt.is_none() {
                    self.first_text_prompt = Some((text.span(), text_key));
                }
                PromptSource::Text(text.get_ref().clone())
            }
            (None, Some(file)) => PromptSource::File(self.wav_file(file, &join(key, "file"))?),
        };
        let prompt = Prompt {
            source,
            language: language.to_owned(),
        };
        if let Some(existing) = self.prompt_ids.get(&prompt) {
            return Some(*existing);
        }
        let new = PromptId(id(self.prompts.len()));
        self.prompts.push(prompt.clone());
        self.prompt_ids.insert(prompt, new);
        Some(new)
    }

    pub(super) fn optional_prompt(
        &mut self,
        raw: Option<&Spanned<RawPrompt>>,
        key: &str,
        language: &str,
    ) -> Result<Option<PromptId>, ()> {
        match raw {
            None => Ok(None),
            Some(p) => self.prompt(p, key, language).map(Some).ok_or(()),
        }
    }

    pub(super) fn check_text_to_speech(&mut self) {
        if let Some((span, key)) = self.first_text_prompt.clone()
            && !(self.env.text_to_speech)()
        {
            self.error(
                &span,
                &key,
                "text prompts are spoken by espeak-ng, which is not on PATH; install espeak-ng (Debian: apt-get install espeak-ng) or use file prompts",
            );
        }
    }

    // ---- actions -----------------------------------------------------------------------

    /// An action and the optional prompt written next to it. `ivr` is the workflow's question
    /// tree when the action is an answer's.
    pub(super) fn action(
        &mut self,
        raw: &Spanned<RawAction>,
        prompt: Option<&Spanned<RawPrompt>>,
        key: &str,
        place: Place,
        language: &str,
        ivr: Option<&mut Ivr>,
    ) -> Option<CallAction> {
        let prompt_key = match key.strip_suffix(".action") {
            Some(parent) => join(parent, "prompt"),
            None => join(key, "prompt"),
        };
        let prompt = self.optional_prompt(prompt, &prompt_key, language);
        let target = self.target(raw, key, place, language, ivr);
        Some(CallAction {
            prompt: prompt.ok()?,
            target: target?,
        })
    }

    fn target(
        &mut self,
        raw: &Spanned<RawAction>,
        key: &str,
        place: Place,
        language: &str,
        ivr: Option<&mut Ivr>,
    ) -> Option<ActionTarget> {
        let span = raw.span();
        let table = match raw.get_ref() {
            RawAction::Word(word) if word.trim() == "disconnect" => {
                return Some(ActionTarget::Disconnect);
            }
            RawAction::Word(word) => {
                let hint = match word.trim() {
                    w @ ("voicemail" | "forward" | "queue" | "question") => {
                        format!("; write {{ {w} = … }}")
                    }
                    _ => String::new(),
                };
                self.error(
                    &span,
                    key,
                    format!(
                        "unknown action \"{word}\"; an action is \"disconnect\", {{ voicemail = \"sip:…\" }}, {{ forward = \"sip:…\" }}, {{ queue = \"NAME\" }} or {{ question = {{ … }} }}{hint}"
                    ),
                );
                return None;
            }
            RawAction::Table(t) => t,
        };
        let given = [
            table.voicemail.is_some(),
            table.forward.is_some(),
            table.queue.is_some(),
            table.question.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            self.error(
                &span,
                key,
                "an action names exactly one target: { voicemail = \"sip:…\" }, { forward = \"sip:…\" }, { queue = \"NAME\" } or { question = { … } }",
            );
            return None;
        }
        if let Some(uri) = &table.voicemail {
            return self
                .outbound_target(uri, &join(key, "voicemail"))
                .map(ActionTarget::Voicemail);
        }
        if let Some(uri) = &table.forward {
            return self
                .outbound_target(uri, &join(key, "forward"))
                .map(ActionTarget::Forward);
        }
        if let Some(name) = &table.queue {
            let queue_key = join(key, "queue");
            if matches!(place, Place::OutOfHours | Place::OnHoliday) {
                self.error(
                    &name.span(),
                    &queue_key,
                    format!(
                        "{} cannot send calls to a queue (agents are not working then); use \"disconnect\", voicemail or forward",
                        place.describe()
                    ),
                );
                return None;
            }
            let found = self.lookup_queue(name, &queue_key)?;
            if let Place::QueueTimeout(own) | Place::QueueOverflow(own) = place
                && own == found
            {
                self.error(
                    &name.span(),
                    &queue_key,
                    format!(
                        "{} cannot send calls back to the same queue; name another queue, voicemail, forward or \"disconnect\"",
                        place.describe()
                    ),
                );
                return None;
            }
            return Some(ActionTarget::Queue(found));
        }
        let question = table.question.as_ref()?;
        let question_key = join(key, "question");
        let (Place::Answer(level), Some(ivr)) = (place, ivr) else {
            self.error(
                &question.span(),
                &question_key,
                format!(
                    "{} cannot go to a question; questions only follow answers of an interactive workflow",
                    place.describe()
                ),
            );
            return None;
        };
        if level >= MAX_QUESTION_LEVELS {
            self.error(
                &question.span(),
                &question_key,
                format!("at most {MAX_QUESTION_LEVELS} levels of questions are allowed; this would be level {}", level + 1),
            );
            return None;
        }
        let raw_question = Spanned::new(question.span(), question.get_ref().as_ref());
        self.question(&raw_question, &question_key, level + 1, language, ivr)
            .map(ActionTarget::Question)
    }

    pub(super) fn question(
        &mut self,
        raw: &Spanned<&RawQuestion>,
        key: &str,
        level: u32,
        language: &str,
        ivr: &mut Ivr,
    ) -> Option<QuestionId> {
        let slot = ivr.questions.len();
        ivr.questions.push(None);
        let q = *raw.get_ref();
        let span = raw.span();
        let prompt = self
            .required(&q.prompt, &span, key, "prompt")
            .and_then(|p| self.prompt(p, &join(key, "prompt"), language));
        let invalid_answer = self.optional_prompt(
            q.invalid_answer.as_ref(),
            &join(key, "invalid_answer"),
            language,
        );
        let no_answer =
            self.optional_prompt(q.no_answer.as_ref(), &join(key, "no_answer"), language);
        let no_input_timeout = self.duration(
            q.no_input_timeout.as_ref(),
            &join(key, "no_input_timeout"),
            &NO_INPUT,
            Some(NO_INPUT_DEFAULT),
        );
        let answers_key = join(key, "answers");
        let mut answers = Some(Vec::new());
        match &q.answers {
            None => {
                self.error(
                    &span,
                    &answers_key,
                    "a question needs answers: add [[…answers]] tables with dtmf and action",
                );
                answers = None;
            }
            Some(list) if list.get_ref().is_empty() => {
                self.error(
                    &list.span(),
                    &answers_key,
                    "a question needs at least one answer",
                );
                answers = None;
            }
            Some(list) => {
                let mut keys_used: HashMap<char, usize> = HashMap::new();
                for (i, a) in list.get_ref().iter().enumerate() {
                    let answer_key = format!("{answers_key}[{i}]");
                    let answer =
                        self.answer(a, &answer_key, level, language, ivr, &mut keys_used, i);
                    match (answer, answers.as_mut()) {
                        (Some(answer), Some(v)) => v.push(answer),
                        _ => answers = None,
                    }
                }
                if keys_used.is_empty() {
                    self.warn(
                        &span,
                        key,
                        "no answer of this question has a dtmf key; voice answers are not recognised yet, so callers cannot choose",
                    );
                }
            }
        }
        let question = Question {
            prompt: prompt?,
            invalid_answer: invalid_answer.ok()?,
            no_answer: no_answer.ok()?,
            no_input_timeout: no_input_timeout?,
            answers: answers?,
        };
        if let Some(s) = ivr.questions.get_mut(slot) {
            *s = Some(question);
        }
        Some(QuestionId(id(slot)))
    }

    #[allow(clippy::too_many_arguments)] // one answer needs its question's whole context
    fn answer(
        &mut self,
        raw: &Spanned<RawAnswer>,
        key: &str,
        level: u32,
        language: &str,
        ivr: &mut Ivr,
        keys_used: &mut HashMap<char, usize>,
        index: usize,
    ) -> Option<Answer> {
        let a = raw.get_ref();
        let span = raw.span();
        let mut ok = true;
        let dtmf = match &a.dtmf {
            None => None,
            Some(d) => {
                let dtmf_key = join(key, "dtmf");
                let text = d.get_ref();
                let mut chars = text.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#' => {
                        if let Some(other) = keys_used.get(&c) {
                            self.error(
                                &d.span(),
                                &dtmf_key,
                                format!(
                                    "key {c} is already used by answers[{other}] of this question"
                                ),
                            );
                            ok = false;
                        } else {
                            keys_used.insert(c, index);
                        }
                        Some(c)
                    }
                    _ => {
                        self.error(
                            &d.span(),
                            &dtmf_key,
                            format!("\"{text}\" is not a key; dtmf is one of 0-9, * or #"),
                        );
                        ok = false;
                        None
                    }
                }
            }
        };
        let mut voice = Vec::new();
        if let Some(list) = &a.voice {
            for (i, phrase) in list.get_ref().iter().enumerate() {
                if phrase.get_ref().trim().is_empty() {
                    self.error(
                        &phrase.span(),
                        &format!("{key}.voice[{i}]"),
                        "a voice phrase cannot be empty",
                    );
                    ok = false;
                } else {
                    voice.push(phrase.get_ref().trim().to_owned());
                }
            }
        }
        if a.dtmf.is_none() && voice.is_empty() {
            self.error(
                &span,
                key,
                "an answer needs dtmf = \"KEY\" or voice = [\"phrase\", …] (or both)",
            );
            ok = false;
        }
        let action = self
            .required(&a.action, &span, key, "action")
            .and_then(|act| {
                self.action(
                    act,
                    a.prompt.as_ref(),
                    &join(key, "action"),
                    Place::Answer(level),
                    language,
                    Some(ivr),
                )
            });
        if !ok {
            return None;
        }
        Some(Answer {
            dtmf,
            voice,
            action: action?,
        })
    }

    /// `out_of_hours` / `on_holiday`: `{ prompt, action }`, action `"disconnect"` when left out.
    pub(super) fn closed_action(
        &mut self,
        raw: Option<&Spanned<RawCallAction>>,
        key: &str,
        place: Place,
        language: &str,
    ) -> Result<Option<CallAction>, ()> {
        let Some(raw) = raw else { return Ok(None) };
        let a = raw.get_ref();
        match &a.action {
            Some(action) => self
                .action(
                    action,
                    a.prompt.as_ref(),
                    &join(key, "action"),
                    place,
                    language,
                    None,
                )
                .map(Some)
                .ok_or(()),
            None => {
                let prompt =
                    self.optional_prompt(a.prompt.as_ref(), &join(key, "prompt"), language)?;
                Ok(Some(CallAction {
                    prompt,
                    target: ActionTarget::Disconnect,
                }))
            }
        }
    }
}
