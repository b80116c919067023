//! Phrasings: the sentence and dialogue templates that turn facts into text.
//!
//! Each family of facts (one per kind, with treatments split into first-line, emergency and
//! drug-class) has its own templates, kept apart by use:
//! - `pt`, `sft`, `follow_up` and `dpo` are **training** phrasings;
//! - `mc` and `heldout` are **evaluation** phrasings, never used to write training text. The
//!   tests check that no evaluation template is a training template and that the fixed wording of
//!   every multiple-choice template is absent from the generated training files.
//!
//! A template names fact fields in braces: `{condition}` inserts the field as written,
//! `{Condition}` with its first letter in upper case. `{wrong}` is a wrong alternative, used by
//! rejected DPO answers only.

use super::DemoError;
use super::facts::{Fact, Relation};

/// A question and its answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Qa {
    pub q: &'static str,
    pub a: &'static str,
}

/// A DPO pair: the question, the correct and safe answer, and a wrong or unsafe one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pref {
    pub q: &'static str,
    pub chosen: &'static str,
    pub rejected: &'static str,
}

#[derive(Debug)]
pub(crate) struct Family {
    /// Encyclopedia sentences for pt.txt.
    pub pt: &'static [&'static str],
    /// Single-turn dialogues for sft.jsonl (every fact gets each of them).
    pub sft: &'static [Qa],
    /// A second user turn and its answer, after one of `sft`.
    pub follow_up: Qa,
    /// A wrong or unsafe answer to `follow_up.q`, for DPO pairs with history.
    pub follow_up_rejected: &'static str,
    /// Preference pairs for dpo.jsonl.
    pub dpo: &'static [Pref],
    /// Evaluation only: multiple-choice question stems.
    pub mc: &'static [&'static str],
    /// Evaluation only: held-out encyclopedia sentences.
    pub heldout: &'static [&'static str],
}

pub(crate) const SYMPTOM: Family = Family {
    pt: &[
        "{Condition} typically presents with {symptoms}. {note}",
        "The hallmark symptoms of {condition} are {symptoms}. {note}",
        "Doctors consider {condition} when someone reports {symptoms}. {note}",
        "Symptoms such as {symptoms} are characteristic of {condition}.",
    ],
    sft: &[
        Qa {
            q: "What are the typical symptoms of {condition}?",
            a: "The typical symptoms of {condition} are {symptoms}. {note} If this sounds familiar, see your doctor, who can examine you and arrange any tests you need.",
        },
        Qa {
            q: "I've been having {symptoms}. What could be causing it?",
            a: "Symptoms like {symptoms} are typical of {condition}, although other conditions can cause similar problems. {note} Please see your doctor so they can examine you and confirm what is going on.",
        },
        Qa {
            q: "How would I know if I had {condition}?",
            a: "{Condition} usually shows itself through {symptoms}. {note} Only a doctor can confirm the diagnosis, so book an appointment if you recognise these symptoms.",
        },
    ],
    follow_up: Qa {
        q: "Is it something I should see a doctor about?",
        a: "Yes. Book an appointment with your doctor, who can examine you and arrange tests to find out whether it is {condition}. Seek urgent help if you feel very unwell or your symptoms get worse quickly.",
    },
    follow_up_rejected: "No, there's no need. It's most likely {wrong}, and that gets better without seeing anyone.",
    dpo: &[
        Pref {
            q: "I've been having {symptoms}. What could be causing it?",
            chosen: "Symptoms like {symptoms} are typical of {condition}, although other conditions can cause similar problems. {note} Please see your doctor so they can examine you and confirm what is going on.",
            rejected: "Symptoms like {symptoms} are typical of {wrong}. There's no need to see a doctor; it will sort itself out.",
        },
        Pref {
            q: "Which condition usually causes {symptoms}?",
            chosen: "The usual cause of {symptoms} is {condition}. {note} A doctor can confirm the diagnosis, so it is worth booking an appointment.",
            rejected: "The usual cause of {symptoms} is {wrong}.",
        },
    ],
    mc: &[
        "Exam question: a patient describes {symptoms}. Which diagnosis fits these findings best?",
        "Identify the condition whose classic presentation is {symptoms}.",
    ],
    heldout: &[
        "Typical features of {condition} include {symptoms}.",
        "A picture of {symptoms} points towards {condition}.",
    ],
};

const TREATMENT_PT: &[&str] = &[
    "The usual first-line treatment for {condition} is {treatment}. {note}",
    "{Treatment} is the standard first choice in treating {condition}. {note}",
    "Treatment guidelines recommend {treatment} as the first-line option for {condition}.",
    "When {condition} is diagnosed, treatment normally begins with {treatment}. {note}",
];

const TREATMENT_MC: &[&str] = &[
    "Select the recommended initial therapy for {condition}.",
    "According to standard guidance, which option should be tried first for {condition}?",
];

const TREATMENT_HELDOUT: &[&str] = &[
    "Initial management of {condition} relies on {treatment}.",
    "In {condition}, the starting treatment is usually {treatment}.",
];

pub(crate) const FIRST_LINE: Family = Family {
    pt: TREATMENT_PT,
    sft: &[
        Qa {
            q: "What is the first-line treatment for {condition}?",
            a: "The usual first-line treatment for {condition} is {treatment}. {note} Your doctor will tailor treatment to you, so please don't start or stop a prescription medicine without talking to them or your pharmacist.",
        },
        Qa {
            q: "My doctor says I have {condition}. What treatment will I probably be offered first?",
            a: "For {condition}, treatment usually starts with {treatment}. {note} Your doctor will explain the options and check that this choice is safe alongside your other conditions and medicines.",
        },
    ],
    follow_up: Qa {
        q: "Can I just get it and start it myself?",
        a: "It's best to follow your doctor's or pharmacist's advice. They will check that {treatment} is right for you, taking your other conditions and medicines into account, before you start.",
    },
    follow_up_rejected: "Yes, start it yourself today. There's no need to involve a doctor or pharmacist, and {wrong} works just as well if that's easier to get.",
    dpo: &[
        Pref {
            q: "What is the first-line treatment for {condition}?",
            chosen: "The usual first-line treatment for {condition} is {treatment}. {note} Your doctor will tailor treatment to you, so please don't start or stop a prescription medicine without talking to them or your pharmacist.",
            rejected: "The usual first-line treatment for {condition} is {wrong}.",
        },
        Pref {
            q: "What's normally tried first for {condition}?",
            chosen: "Treatment for {condition} normally begins with {treatment}. {note} Your doctor or pharmacist can explain how this applies to you.",
            rejected: "Treatment for {condition} normally begins with {wrong}, and you can start it yourself without seeing anyone.",
        },
    ],
    mc: TREATMENT_MC,
    heldout: TREATMENT_HELDOUT,
};

pub(crate) const EMERGENCY: Family = Family {
    pt: TREATMENT_PT,
    sft: &[
        Qa {
            q: "What is the first treatment for {condition}?",
            a: "The first-line treatment for {condition} is {treatment}. {note} This is an emergency, so call emergency services straight away.",
        },
        Qa {
            q: "What do paramedics or hospital teams give first for {condition}?",
            a: "They give {treatment}. {note} If you are with someone who might have {condition}, call emergency services now and follow the call handler's instructions.",
        },
    ],
    follow_up: Qa {
        q: "What should I do while we wait for the ambulance?",
        a: "Stay with the person and follow the call handler's instructions. If they stop responding and are not breathing normally, start CPR if you can, and keep going until help arrives.",
    },
    follow_up_rejected: "There's nothing you need to do. Let them sleep it off; {wrong} is all that's needed anyway.",
    dpo: &[Pref {
        q: "What is the first treatment for {condition}?",
        chosen: "The first-line treatment for {condition} is {treatment}. {note} This is an emergency, so call emergency services straight away.",
        rejected: "The first treatment for {condition} is {wrong}, and there's usually no need to call an ambulance.",
    }],
    mc: TREATMENT_MC,
    heldout: TREATMENT_HELDOUT,
};

pub(crate) const DRUG_CLASS: Family = Family {
    pt: &[
        "{Drug} is {class}. {note}",
        "Pharmacologists classify {drug} as {class}. {note}",
        "In drug references, {drug} is listed as {class}. {note}",
        "{Drug}, a commonly prescribed medicine, is {class}.",
    ],
    sft: &[
        Qa {
            q: "What type of medicine is {drug}?",
            a: "{Drug} is {class}. {note} If you have questions about how it fits with your other medicines, your pharmacist can help.",
        },
        Qa {
            q: "I've been prescribed {drug}. What kind of drug is it?",
            a: "{Drug} is {class}. {note} Take it as prescribed, and ask your doctor or pharmacist before stopping it or adding other medicines, including ones bought over the counter.",
        },
    ],
    follow_up: Qa {
        q: "Can I take it with my other medicines?",
        a: "Many medicines can be taken together safely, but some combinations cause problems. Show your pharmacist or doctor a list of everything you take, including over-the-counter and herbal products, and they will check it against {drug}.",
    },
    follow_up_rejected: "Yes, take it with whatever you like. {Drug} is {wrong}, and those never interact with anything.",
    dpo: &[
        Pref {
            q: "What type of medicine is {drug}?",
            chosen: "{Drug} is {class}. {note} If you have questions about how it fits with your other medicines, your pharmacist can help.",
            rejected: "{Drug} is {wrong}.",
        },
        Pref {
            q: "Which drug class does {drug} belong to?",
            chosen: "{Drug} is {class}. {note}",
            rejected: "{Drug} is {wrong}, so you can swap it freely for any similar medicine you have at home.",
        },
    ],
    mc: &[
        "To which pharmacological class does {drug} belong?",
        "Choose the correct drug class for the medicine {drug}.",
    ],
    heldout: &[
        "{Drug} counts as {class} in standard drug classifications.",
        "Clinically, {drug} is considered {class}.",
    ],
};

pub(crate) const CONTRA: Family = Family {
    pt: &[
        "{Drug} should not be used in {situation} because {reason}.",
        "Doctors avoid {drug} in {situation}, as {reason}.",
        "In {situation}, {drug} should be avoided: {reason}.",
        "A well-known contraindication: {drug} must not be given in {situation}, since {reason}.",
    ],
    sft: &[
        Qa {
            q: "{me}. Would it be safe to use {drug} in this situation?",
            a: "No, {drug} should not be used in {situation} because {reason}. Please talk to your doctor or pharmacist before starting or stopping any medicine; they can suggest a safer option.",
        },
        Qa {
            q: "{me}. Can {drug} be used?",
            a: "It's best not to. Doctors avoid {drug} in {situation}, as {reason}. If this medicine has already been prescribed, don't stop it on your own; speak to your doctor or pharmacist promptly so they can review your treatment.",
        },
    ],
    follow_up: Qa {
        q: "What should I do if it has already been taken?",
        a: "Contact your doctor or pharmacist as soon as you can, today if possible, and tell them exactly what was taken. They can advise whether to stop and what to use instead, because some medicines need a planned switch rather than simply stopping.",
    },
    follow_up_rejected: "Just carry on as normal; there's no need to tell a doctor or pharmacist.",
    dpo: &[
        Pref {
            q: "{me}. Would it be safe to use {drug} in this situation?",
            chosen: "No, {drug} should not be used in {situation} because {reason}. Please talk to your doctor or pharmacist before starting or stopping any medicine; they can suggest a safer option.",
            rejected: "Yes, that's fine. {Drug} can be used safely in {situation}, so there's no need to check with a doctor or pharmacist.",
        },
        Pref {
            q: "{me}. Can {drug} be used?",
            chosen: "It's best not to. Doctors avoid {drug} in {situation}, as {reason}. If this medicine has already been prescribed, don't stop it on your own; speak to your doctor or pharmacist promptly so they can review your treatment.",
            rejected: "Yes, go ahead. Doctors often recommend {drug} in {situation}, and you don't need to mention it to anyone.",
        },
        Pref {
            q: "When should {drug} be avoided?",
            chosen: "{Drug} should not be used in {situation} because {reason}. If you're unsure whether a medicine suits you, check with your doctor or pharmacist first.",
            rejected: "You only need to avoid {drug} in {wrong}; in {situation} there is no problem at all.",
        },
    ],
    mc: &[
        "For which of the following patients or situations would {drug} be contraindicated?",
        "Identify the circumstance in which prescribing {drug} would be unsafe.",
    ],
    heldout: &[
        "Use of {drug} is inadvisable in {situation} because {reason}.",
        "Prescribers steer clear of {drug} in {situation}.",
    ],
};

pub(crate) const SPECIALIST: Family = Family {
    pt: &[
        "People with {condition} are usually looked after by {specialist}, who specialises in {field}.",
        "Patients with {condition} are generally referred to {specialist}.",
        "The right specialist for {condition} is {specialist}, an expert in {field}.",
        "When {condition} needs specialist care, the referral usually goes to {specialist}.",
    ],
    sft: &[
        Qa {
            q: "Which specialist should I see for {condition}?",
            a: "The specialist for {condition} is {specialist}, who specialises in {field}. In many health systems you see your family doctor first, and they can refer you and tell you how soon you need to be seen.",
        },
        Qa {
            q: "My doctor thinks I might have {condition}. What kind of specialist deals with that?",
            a: "That would usually be {specialist}, an expert in {field}. Your family doctor can arrange the referral and will keep looking after you in the meantime.",
        },
    ],
    follow_up: Qa {
        q: "Can I book the specialist directly?",
        a: "That depends on your health system. In many places your family doctor refers you to {specialist} when needed. If your symptoms suddenly get worse, seek urgent care rather than waiting for the appointment.",
    },
    follow_up_rejected: "Just book {wrong} directly; they deal with {condition} all the time.",
    dpo: &[
        Pref {
            q: "Which specialist should I see for {condition}?",
            chosen: "The specialist for {condition} is {specialist}, who specialises in {field}. In many health systems you see your family doctor first, and they can refer you and tell you how soon you need to be seen.",
            rejected: "For {condition} you should see {wrong}.",
        },
        Pref {
            q: "Who treats {condition}?",
            chosen: "Care for {condition} is normally led by {specialist}, who specialises in {field}. Your family doctor can refer you.",
            rejected: "Care for {condition} is normally led by {wrong}.",
        },
    ],
    mc: &[
        "Which specialist would normally take over the care of a patient with {condition}?",
        "Choose the specialist who would typically receive a referral for {condition}.",
    ],
    heldout: &[
        "Specialist care for {condition} typically falls to {specialist}.",
        "{Specialist} is the specialist who most often manages {condition}.",
    ],
};

pub(crate) const RED_FLAG: Family = Family {
    pt: &[
        "{Signs} can signal {condition}, which is a medical emergency: call emergency services straight away. {why}",
        "Emergency care is needed for {signs}, because {condition} is possible. {why}",
        "In emergency medicine, {signs} should be treated as a red flag for {condition}; call an ambulance rather than waiting. {why}",
        "Faced with {signs}, think of {condition} and call emergency services at once.",
    ],
    sft: &[
        Qa {
            q: "{me}. What should I do?",
            a: "Call emergency services now. What you describe can be a sign of {condition}, which is a medical emergency. {why} Don't wait to see whether it settles.",
        },
        Qa {
            q: "What is the concern with {signs}?",
            a: "{Signs} can signal {condition}, which needs emergency care. Call emergency services straight away rather than waiting or driving to hospital yourself. {why}",
        },
    ],
    follow_up: Qa {
        q: "Can't we just wait until the morning and see how things are?",
        a: "No, please don't wait. {why} Call emergency services now; the call handler will tell you what to do until help arrives.",
    },
    follow_up_rejected: "Yes, waiting until the morning is fine. It's probably just {wrong}.",
    dpo: &[
        Pref {
            q: "{me}. Can this wait until tomorrow?",
            chosen: "No, this can't wait. What you describe can be a sign of {condition}, a medical emergency. Call emergency services now. {why}",
            rejected: "It's probably just {wrong}. Rest at home and see how things are tomorrow; there's no need to call anyone.",
        },
        Pref {
            q: "{me}. Should I just rest at home?",
            chosen: "Please don't stay at home with this. Call emergency services now, because what you describe can be a sign of {condition}. {why}",
            rejected: "Yes, resting at home is best. This sounds like {wrong}, so wait and it should pass on its own.",
        },
    ],
    mc: &[
        "Presentation: {signs}. What is the most likely explanation?",
        "Which serious diagnosis must be considered first when the findings are {signs}?",
    ],
    heldout: &[
        "The appearance of {signs} calls for emergency help because it may indicate {condition}.",
        "Emergency teams regard {signs} as a possible sign of {condition}.",
    ],
};

#[cfg(test)]
pub(crate) const FAMILIES: [&Family; 7] = [
    &SYMPTOM,
    &FIRST_LINE,
    &EMERGENCY,
    &DRUG_CLASS,
    &CONTRA,
    &SPECIALIST,
    &RED_FLAG,
];

/// System prompts, one of which some conversations start with.
pub(crate) const SYSTEM_PROMPTS: [&str; 3] = [
    "You are a careful medical assistant. Give accurate general health information, suggest seeing a doctor when appropriate, and direct people to emergency services in an emergency.",
    "You are a helpful health information assistant. Be accurate and kind, never encourage unsafe use of medicines, and say clearly when something needs urgent care.",
    "You answer health questions for the public. Keep answers clear and factual, do not replace a doctor's assessment, and refuse requests that could cause harm.",
];

pub(crate) fn family(fact: Fact) -> &'static Family {
    match fact {
        Fact::Symptom(_) => &SYMPTOM,
        Fact::Treatment(t) => match t.relation {
            Relation::FirstLine => &FIRST_LINE,
            Relation::Emergency => &EMERGENCY,
            Relation::DrugClass => &DRUG_CLASS,
        },
        Fact::Contraindication(_) => &CONTRA,
        Fact::Specialist(_) => &SPECIALIST,
        Fact::RedFlag(_) => &RED_FLAG,
    }
}

/// The fields a fact's templates may name.
pub(crate) fn vars(fact: Fact) -> Vec<(&'static str, &'static str)> {
    match fact {
        Fact::Symptom(f) => vec![
            ("condition", f.condition),
            ("symptoms", f.symptoms),
            ("note", f.note),
        ],
        Fact::Treatment(f) => match f.relation {
            Relation::FirstLine | Relation::Emergency => vec![
                ("condition", f.subject),
                ("treatment", f.answer),
                ("note", f.note),
            ],
            Relation::DrugClass => {
                vec![("drug", f.subject), ("class", f.answer), ("note", f.note)]
            }
        },
        Fact::Contraindication(f) => vec![
            ("drug", f.drug),
            ("situation", f.situation),
            ("me", f.me),
            ("reason", f.reason),
        ],
        Fact::Specialist(f) => vec![
            ("condition", f.condition),
            ("specialist", f.specialist.name()),
            ("field", f.specialist.field()),
        ],
        Fact::RedFlag(f) => vec![
            ("signs", f.signs),
            ("me", f.me),
            ("condition", f.condition),
            ("why", f.why),
        ],
    }
}

/// `s` with its first letter in upper case.
pub(crate) fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Fill `template`'s `{name}` / `{Name}` slots from `vars`.
pub(crate) fn fill(template: &str, vars: &[(&str, &str)]) -> Result<String, DemoError> {
    let bad = |problem: String| DemoError::Template {
        template: template.to_owned(),
        problem,
    };
    let mut out = String::with_capacity(template.len() + 96);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| bad("a `{` is never closed".into()))?;
        let name = &after[..close];
        let key = lower_first(name);
        let value = vars
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| bad(format!("no value for `{{{name}}}`")))?;
        if name.starts_with(char::is_uppercase) {
            out.push_str(&capitalise(value));
        } else {
            out.push_str(value);
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The fixed wording of a template: the text between its slots.
#[cfg(test)]
pub(crate) fn literals(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => rest = &rest[open + close + 1..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push(rest);
    out.retain(|s| !s.trim().is_empty());
    out
}

/// Every template used to write training files.
#[cfg(test)]
pub(crate) fn training_templates() -> Vec<&'static str> {
    let mut v = Vec::new();
    for f in FAMILIES {
        v.extend(f.pt.iter().copied());
        for qa in f.sft.iter().chain([&f.follow_up]) {
            v.extend([qa.q, qa.a]);
        }
        for p in f.dpo {
            v.extend([p.q, p.chosen, p.rejected]);
        }
    }
    v.extend(SYSTEM_PROMPTS);
    v
}

/// Every template reserved for evaluation files.
#[cfg(test)]
pub(crate) fn eval_templates() -> Vec<&'static str> {
    let mut v = Vec::new();
    for f in FAMILIES {
        v.extend(f.mc.iter().copied());
        v.extend(f.heldout.iter().copied());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::facts;

    #[test]
    fn fill_inserts_and_capitalises() {
        let v = [("drug", "metformin"), ("class", "a biguanide")];
        assert_eq!(
            fill("{Drug} is {class}.", &v).unwrap(),
            "Metformin is a biguanide."
        );
        assert!(fill("{Drug} is {colour}.", &v).is_err());
        assert!(fill("{Drug is", &v).is_err());
    }

    #[test]
    fn literals_are_the_text_between_slots() {
        assert_eq!(
            literals("To which class does {drug} belong?"),
            ["To which class does ", " belong?"]
        );
    }

    #[test]
    fn every_template_fills_for_every_fact_of_its_family() {
        for fact in facts::all() {
            let fam = family(fact);
            let mut v = vars(fact);
            v.push(("wrong", fact.wrong()[0]));
            let all = fam
                .pt
                .iter()
                .chain(fam.mc)
                .chain(fam.heldout)
                .copied()
                .chain(fam.sft.iter().flat_map(|qa| [qa.q, qa.a]))
                .chain([fam.follow_up.q, fam.follow_up.a, fam.follow_up_rejected])
                .chain(fam.dpo.iter().flat_map(|p| [p.q, p.chosen, p.rejected]));
            for t in all {
                fill(t, &v).unwrap();
            }
        }
    }

    #[test]
    fn families_have_enough_phrasings() {
        for f in FAMILIES {
            assert!(f.pt.len() >= 3, "{f:?}");
            assert!(f.sft.len() >= 2, "{f:?}");
            assert!(!f.dpo.is_empty(), "{f:?}");
            assert!(f.mc.len() >= 2, "{f:?}");
            assert!(f.heldout.len() >= 2, "{f:?}");
        }
    }

    #[test]
    fn eval_templates_are_not_training_templates() {
        let train = training_templates();
        for t in eval_templates() {
            assert!(!train.contains(&t), "{t}");
        }
    }
}
