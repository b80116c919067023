//! The demo corpus's facts: hand-written, well-established textbook medicine, as typed data.
//!
//! Five kinds, each a table of its own type: conditions and their hallmark symptoms, first-line
//! treatments and drug classes, contraindications, which specialist looks after a condition, and
//! red-flag symptoms that need emergency care. Every fact carries three plausible but WRONG
//! alternatives of the same type as its answer: they become multiple-choice distractors and the
//! rejected side of DPO pairs.
//!
//! Rules for editing this table: only facts that any current general textbook states, written in
//! our own words; no doses; wrong alternatives must be clearly wrong for the question asked (never
//! a second right answer), distinct from each other and from the answer. [`validate`] checks the
//! mechanical part of that at generation time.
//!
//! Text fields are fragments that templates splice into sentences, so each has a fixed grammatical
//! shape, documented on its field.

use std::collections::BTreeSet;

/// The five kinds of fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Symptom,
    Treatment,
    Contraindication,
    Specialist,
    RedFlag,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Symptom,
        Kind::Treatment,
        Kind::Contraindication,
        Kind::Specialist,
        Kind::RedFlag,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Symptom => "symptom",
            Kind::Treatment => "treatment",
            Kind::Contraindication => "contraindication",
            Kind::Specialist => "specialist",
            Kind::RedFlag => "red-flag",
        }
    }
}

/// A condition and its hallmark symptoms; the answer is the condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymptomFact {
    /// Noun phrase, with an article where English wants one: "type 2 diabetes", "an overactive
    /// thyroid (hyperthyroidism)".
    pub condition: &'static str,
    /// Noun phrase listing the symptoms, lower case: "increased thirst, ... and blurred vision".
    pub symptoms: &'static str,
    /// One full sentence of true background.
    pub note: &'static str,
    /// Conditions that do not fit the symptoms.
    pub wrong: [&'static str; 3],
}

/// How a treatment fact relates its subject to its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// subject = a condition treated in ordinary care; answer = its first-line treatment.
    FirstLine,
    /// subject = an emergency; answer = its first-line emergency treatment.
    Emergency,
    /// subject = a drug; answer = its class, with an article ("a biguanide").
    DrugClass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreatmentFact {
    pub relation: Relation,
    /// A condition (noun phrase, no leading article needed) or a drug name.
    pub subject: &'static str,
    /// A treatment noun phrase, or a drug class with its article.
    pub answer: &'static str,
    /// One full sentence of true background.
    pub note: &'static str,
    pub wrong: [&'static str; 3],
}

/// A drug and a situation in which it must not be used; the answer is the situation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContraFact {
    /// The drug or class as written in running text: "ACE inhibitors", "aspirin".
    pub drug: &'static str,
    /// Fits after "in": "pregnancy", "children under 16".
    pub situation: &'static str,
    /// The same situation told by a patient or relative, one sentence without its full stop.
    pub me: &'static str,
    /// A lower-case clause giving the reason: "they can harm the unborn baby's kidneys".
    pub reason: &'static str,
    /// Situations where the drug is commonly used (so not contraindications), fitting after "in".
    pub wrong: [&'static str; 3],
}

/// The specialists the table refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Specialist {
    Ophthalmologist,
    Dermatologist,
    Neurologist,
    Cardiologist,
    Endocrinologist,
    Gastroenterologist,
    Nephrologist,
    Urologist,
    RespiratoryPhysician,
    Rheumatologist,
    Ent,
    Psychiatrist,
    Haematologist,
    Obstetrician,
    Gynaecologist,
    OrthopaedicSurgeon,
    Allergist,
}

impl Specialist {
    /// With its article: "an ophthalmologist".
    pub fn name(self) -> &'static str {
        match self {
            Specialist::Ophthalmologist => "an ophthalmologist",
            Specialist::Dermatologist => "a dermatologist",
            Specialist::Neurologist => "a neurologist",
            Specialist::Cardiologist => "a cardiologist",
            Specialist::Endocrinologist => "an endocrinologist",
            Specialist::Gastroenterologist => "a gastroenterologist",
            Specialist::Nephrologist => "a nephrologist",
            Specialist::Urologist => "a urologist",
            Specialist::RespiratoryPhysician => "a respiratory physician (pulmonologist)",
            Specialist::Rheumatologist => "a rheumatologist",
            Specialist::Ent => "an ear, nose and throat (ENT) specialist",
            Specialist::Psychiatrist => "a psychiatrist",
            Specialist::Haematologist => "a haematologist",
            Specialist::Obstetrician => "an obstetrician",
            Specialist::Gynaecologist => "a gynaecologist",
            Specialist::OrthopaedicSurgeon => "an orthopaedic surgeon",
            Specialist::Allergist => "an allergist (allergy specialist)",
        }
    }

    /// What the specialist deals with, fitting after "specialises in".
    pub fn field(self) -> &'static str {
        match self {
            Specialist::Ophthalmologist => "eye diseases and eye surgery",
            Specialist::Dermatologist => "conditions of the skin, hair and nails",
            Specialist::Neurologist => "disorders of the brain, spinal cord and nerves",
            Specialist::Cardiologist => "conditions of the heart",
            Specialist::Endocrinologist => {
                "hormone disorders, including diabetes and thyroid disease"
            }
            Specialist::Gastroenterologist => "diseases of the digestive system",
            Specialist::Nephrologist => "kidney disease",
            Specialist::Urologist => "the urinary tract and the male reproductive organs",
            Specialist::RespiratoryPhysician => "lung and breathing conditions",
            Specialist::Rheumatologist => "inflammatory joint and autoimmune conditions",
            Specialist::Ent => "disorders of the ear, nose and throat",
            Specialist::Psychiatrist => "mental health conditions",
            Specialist::Haematologist => "disorders of the blood",
            Specialist::Obstetrician => "pregnancy and childbirth",
            Specialist::Gynaecologist => "conditions of the female reproductive system",
            Specialist::OrthopaedicSurgeon => "bones and joints and their surgery",
            Specialist::Allergist => "allergies",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialistFact {
    /// Noun phrase fitting after "people with" and "for".
    pub condition: &'static str,
    pub specialist: Specialist,
    pub wrong: [Specialist; 3],
}

/// Red-flag signs; the answer is the emergency they can signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedFlagFact {
    /// Noun phrase fitting after "anyone with" and "someone develops", lower case.
    pub signs: &'static str,
    /// The same signs as a worried person would report them, one sentence without its full stop.
    pub me: &'static str,
    /// The emergency, with its article: "a stroke".
    pub condition: &'static str,
    /// One full sentence on why it cannot wait (or what to do while waiting).
    pub why: &'static str,
    /// Harmless-sounding misreadings of the signs.
    pub wrong: [&'static str; 3],
}

/// One fact of any kind, borrowed from the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    Symptom(&'static SymptomFact),
    Treatment(&'static TreatmentFact),
    Contraindication(&'static ContraFact),
    Specialist(&'static SpecialistFact),
    RedFlag(&'static RedFlagFact),
}

impl Fact {
    pub fn kind(self) -> Kind {
        match self {
            Fact::Symptom(_) => Kind::Symptom,
            Fact::Treatment(_) => Kind::Treatment,
            Fact::Contraindication(_) => Kind::Contraindication,
            Fact::Specialist(_) => Kind::Specialist,
            Fact::RedFlag(_) => Kind::RedFlag,
        }
    }

    /// What a question about the fact has as its right answer.
    pub fn answer(self) -> &'static str {
        match self {
            Fact::Symptom(f) => f.condition,
            Fact::Treatment(f) => f.answer,
            Fact::Contraindication(f) => f.situation,
            Fact::Specialist(f) => f.specialist.name(),
            Fact::RedFlag(f) => f.condition,
        }
    }

    /// The three wrong alternatives, of the answer's type.
    pub fn wrong(self) -> [&'static str; 3] {
        match self {
            Fact::Symptom(f) => f.wrong,
            Fact::Treatment(f) => f.wrong,
            Fact::Contraindication(f) => f.wrong,
            Fact::Specialist(f) => f.wrong.map(Specialist::name),
            Fact::RedFlag(f) => f.wrong,
        }
    }

    /// What the fact is about, normalised so facts of different kinds about one condition or
    /// drug share it: lower case, leading article and any parenthesis dropped.
    pub fn topic(self) -> String {
        let raw = match self {
            Fact::Symptom(f) => f.condition,
            Fact::Treatment(f) => f.subject,
            Fact::Contraindication(f) => f.drug,
            Fact::Specialist(f) => f.condition,
            Fact::RedFlag(f) => f.condition,
        };
        normalise_topic(raw)
    }
}

fn normalise_topic(raw: &str) -> String {
    let mut s = raw.to_lowercase();
    if let Some(open) = s.find(" (") {
        s.truncate(open);
    }
    for article in ["a ", "an ", "the "] {
        if let Some(rest) = s.strip_prefix(article) {
            s = rest.to_owned();
            break;
        }
    }
    s.trim().to_owned()
}

/// Every fact, in table order: symptoms, treatments, contraindications, specialists, red flags.
pub fn all() -> Vec<Fact> {
    let mut v = Vec::new();
    v.extend(SYMPTOMS.iter().map(Fact::Symptom));
    v.extend(TREATMENTS.iter().map(Fact::Treatment));
    v.extend(CONTRAINDICATIONS.iter().map(Fact::Contraindication));
    v.extend(SPECIALISTS.iter().map(Fact::Specialist));
    v.extend(RED_FLAGS.iter().map(Fact::RedFlag));
    v
}

/// How many facts of each kind the table holds.
pub fn counts() -> Vec<(Kind, usize)> {
    let facts = all();
    Kind::ALL
        .iter()
        .map(|&k| (k, facts.iter().filter(|f| f.kind() == k).count()))
        .collect()
}

/// A mechanical problem with one fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableProblem {
    /// `kind/index` within its table, e.g. `symptom/3`.
    pub at: String,
    pub problem: String,
}

/// Check what a machine can check: no empty field, three distinct wrong alternatives that differ
/// from the answer (ignoring case), and no duplicate facts.
pub fn validate() -> Result<(), TableProblem> {
    let mut seen = BTreeSet::new();
    let mut index = [0usize; 5];
    for fact in all() {
        let k = fact.kind();
        let i = index[k as usize];
        index[k as usize] += 1;
        let at = format!("{}/{}", k.name(), i);
        let bad = |problem: String| TableProblem {
            at: at.clone(),
            problem,
        };
        for text in fields(fact) {
            if text.trim().is_empty() {
                return Err(bad("has an empty field".into()));
            }
        }
        let answer = fact.answer().to_lowercase();
        let wrong: BTreeSet<String> = fact.wrong().iter().map(|w| w.to_lowercase()).collect();
        if wrong.len() != 3 {
            return Err(bad("wrong alternatives are not distinct".into()));
        }
        if wrong.contains(&answer) {
            return Err(bad(format!(
                "the answer {:?} is among its wrong alternatives",
                fact.answer()
            )));
        }
        let key = (k, fact.topic(), answer);
        if !seen.insert(key) {
            return Err(bad("duplicates an earlier fact".into()));
        }
    }
    Ok(())
}

fn fields(fact: Fact) -> Vec<&'static str> {
    let mut v = match fact {
        Fact::Symptom(f) => vec![f.condition, f.symptoms, f.note],
        Fact::Treatment(f) => vec![f.subject, f.answer, f.note],
        Fact::Contraindication(f) => vec![f.drug, f.situation, f.me, f.reason],
        Fact::Specialist(f) => vec![f.condition],
        Fact::RedFlag(f) => vec![f.signs, f.me, f.condition, f.why],
    };
    v.extend(fact.wrong());
    v
}

const fn sym(
    condition: &'static str,
    symptoms: &'static str,
    note: &'static str,
    wrong: [&'static str; 3],
) -> SymptomFact {
    SymptomFact {
        condition,
        symptoms,
        note,
        wrong,
    }
}

const fn first(
    subject: &'static str,
    answer: &'static str,
    note: &'static str,
    wrong: [&'static str; 3],
) -> TreatmentFact {
    TreatmentFact {
        relation: Relation::FirstLine,
        subject,
        answer,
        note,
        wrong,
    }
}

const fn emergency(
    subject: &'static str,
    answer: &'static str,
    note: &'static str,
    wrong: [&'static str; 3],
) -> TreatmentFact {
    TreatmentFact {
        relation: Relation::Emergency,
        subject,
        answer,
        note,
        wrong,
    }
}

const fn class(
    subject: &'static str,
    answer: &'static str,
    note: &'static str,
    wrong: [&'static str; 3],
) -> TreatmentFact {
    TreatmentFact {
        relation: Relation::DrugClass,
        subject,
        answer,
        note,
        wrong,
    }
}

const fn contra(
    drug: &'static str,
    situation: &'static str,
    me: &'static str,
    reason: &'static str,
    wrong: [&'static str; 3],
) -> ContraFact {
    ContraFact {
        drug,
        situation,
        me,
        reason,
        wrong,
    }
}

const fn spec(
    condition: &'static str,
    specialist: Specialist,
    wrong: [Specialist; 3],
) -> SpecialistFact {
    SpecialistFact {
        condition,
        specialist,
        wrong,
    }
}

const fn flag(
    signs: &'static str,
    me: &'static str,
    condition: &'static str,
    why: &'static str,
    wrong: [&'static str; 3],
) -> RedFlagFact {
    RedFlagFact {
        signs,
        me,
        condition,
        why,
        wrong,
    }
}

/// Conditions and hallmark symptoms. Source kind: standard clinical medicine textbooks (the
/// classic presentation of each condition as taught in undergraduate medicine).
pub const SYMPTOMS: &[SymptomFact] = &[
    sym(
        "type 2 diabetes",
        "increased thirst, passing urine more often than usual, tiredness and blurred vision",
        "Many people have no symptoms at first, so it is often found on a routine blood test.",
        [
            "gout",
            "migraine",
            "an underactive thyroid (hypothyroidism)",
        ],
    ),
    sym(
        "an underactive thyroid (hypothyroidism)",
        "tiredness, weight gain, feeling cold, constipation and dry skin",
        "It is diagnosed with a blood test of thyroid hormone levels.",
        ["an overactive thyroid (hyperthyroidism)", "asthma", "gout"],
    ),
    sym(
        "an overactive thyroid (hyperthyroidism)",
        "weight loss despite a good appetite, feeling hot, a fast or irregular heartbeat, shaky hands and anxiety",
        "A blood test of thyroid hormone levels confirms the diagnosis.",
        [
            "an underactive thyroid (hypothyroidism)",
            "osteoarthritis",
            "gallstones",
        ],
    ),
    sym(
        "iron-deficiency anaemia",
        "tiredness, lack of energy, pale skin and shortness of breath on exertion",
        "A blood test confirms it, and the cause of the iron loss should always be looked for.",
        ["psoriasis", "gout", "glaucoma"],
    ),
    sym(
        "migraine",
        "a throbbing headache, often on one side of the head, with nausea and sensitivity to light and sound",
        "Some people first notice an aura, such as flashing lights or zigzag lines in their vision.",
        ["a tension-type headache", "sinusitis", "an ear infection"],
    ),
    sym(
        "gout",
        "sudden, severe pain with redness, heat and swelling in a single joint, very often the base of the big toe",
        "It is caused by crystals of uric acid forming in the joint.",
        ["osteoarthritis", "plantar fasciitis", "a bunion"],
    ),
    sym(
        "rheumatoid arthritis",
        "painful, swollen joints on both sides of the body, often the small joints of the hands and feet, with stiffness that is worst in the morning",
        "It is an autoimmune disease, and early treatment helps prevent lasting joint damage.",
        ["gout", "carpal tunnel syndrome", "shingles"],
    ),
    sym(
        "osteoarthritis",
        "joint pain that is worse with use and at the end of the day, with brief stiffness after rest, most often in the knees, hips and hands",
        "It is the most common form of arthritis and becomes more common with age.",
        ["gout", "a frozen shoulder", "shingles"],
    ),
    sym(
        "asthma",
        "wheezing, breathlessness, a tight chest and coughing that come and go, often worse at night or with exercise",
        "It often starts in childhood and is linked with eczema and hay fever.",
        [
            "a common cold",
            "iron-deficiency anaemia",
            "an underactive thyroid (hypothyroidism)",
        ],
    ),
    sym(
        "chronic obstructive pulmonary disease (COPD)",
        "long-term breathlessness, a persistent cough with phlegm and frequent chest infections, usually in people who smoke or used to smoke",
        "The lung damage is permanent, but stopping smoking slows it down.",
        [
            "hay fever (allergic rhinitis)",
            "gastro-oesophageal reflux disease (GORD)",
            "migraine",
        ],
    ),
    sym(
        "gastro-oesophageal reflux disease (GORD)",
        "heartburn, a burning feeling behind the breastbone after meals and sour-tasting fluid coming back into the mouth",
        "Symptoms are often worse when lying down or bending over.",
        ["asthma", "irritable bowel syndrome (IBS)", "kidney stones"],
    ),
    sym(
        "irritable bowel syndrome (IBS)",
        "tummy pain or cramps that ease after opening the bowels, bloating, and bouts of diarrhoea, constipation or both",
        "Weight loss, bleeding from the bottom or symptoms starting later in life are not typical of it and need a doctor's assessment.",
        ["appendicitis", "gallstones", "kidney stones"],
    ),
    sym(
        "coeliac disease",
        "diarrhoea, bloating, tummy pain, weight loss and tiredness triggered by eating gluten",
        "It is an autoimmune reaction to gluten, found in wheat, barley and rye, and is treated with a lifelong gluten-free diet.",
        [
            "lactose intolerance",
            "gallstones",
            "hay fever (allergic rhinitis)",
        ],
    ),
    sym(
        "appendicitis",
        "pain that starts around the belly button and moves to the lower right side of the abdomen, with nausea, loss of appetite and a fever",
        "It usually needs urgent surgery, so these symptoms need medical help the same day.",
        [
            "irritable bowel syndrome (IBS)",
            "gastro-oesophageal reflux disease (GORD)",
            "a urinary tract infection",
        ],
    ),
    sym(
        "a urinary tract infection (cystitis)",
        "a burning or stinging feeling when passing urine, needing to pass urine often and urgently, and pain low in the tummy",
        "Fever, pain in the back or side, or feeling very unwell can mean the kidneys are infected and needs prompt medical care.",
        ["irritable bowel syndrome (IBS)", "gout", "coeliac disease"],
    ),
    sym(
        "kidney stones",
        "severe, cramping pain in the back or side that can spread to the groin, coming in waves, often with blood in the urine",
        "Small stones often pass on their own, but larger ones may need hospital treatment.",
        [
            "osteoarthritis",
            "a pulled back muscle",
            "irritable bowel syndrome (IBS)",
        ],
    ),
    sym(
        "influenza (flu)",
        "a sudden fever, muscle aches, headache, a dry cough and feeling exhausted",
        "It is caused by a virus, so antibiotics do not help; rest and fluids are the mainstay for most people.",
        [
            "hay fever (allergic rhinitis)",
            "asthma",
            "a urinary tract infection",
        ],
    ),
    sym(
        "the common cold",
        "a blocked or runny nose, sneezing, a sore throat and a mild cough that come on gradually",
        "It is a mild viral infection that usually clears up without treatment, and antibiotics do not help.",
        ["pneumonia", "asthma", "migraine"],
    ),
    sym(
        "chickenpox",
        "an itchy rash of spots that turn into fluid-filled blisters and then crust over, with a mild fever",
        "It is caused by the varicella-zoster virus and is very contagious until all the blisters have crusted.",
        [
            "psoriasis",
            "eczema (atopic dermatitis)",
            "hay fever (allergic rhinitis)",
        ],
    ),
    sym(
        "shingles",
        "a painful rash of blisters in a band on one side of the body, often preceded by tingling or burning in the skin",
        "It is caused by the chickenpox virus reawakening in a nerve, and antiviral treatment works best when started early.",
        [
            "psoriasis",
            "eczema (atopic dermatitis)",
            "hives (urticaria)",
        ],
    ),
    sym(
        "psoriasis",
        "raised red patches of skin covered with silvery scales, often on the elbows, knees, lower back and scalp",
        "It is a long-term immune-related condition that comes and goes in flare-ups, and it is not contagious.",
        ["chickenpox", "shingles", "hives (urticaria)"],
    ),
    sym(
        "eczema (atopic dermatitis)",
        "dry, itchy, red and cracked skin, often in the creases of the elbows and knees",
        "It often starts in childhood and is linked with asthma and hay fever.",
        ["shingles", "chickenpox", "psoriasis"],
    ),
    sym(
        "Parkinson's disease",
        "a tremor that is most noticeable at rest, slowness of movement and stiff muscles",
        "It is caused by the loss of dopamine-producing nerve cells in the brain, and symptoms usually start on one side.",
        [
            "migraine",
            "carpal tunnel syndrome",
            "an underactive thyroid (hypothyroidism)",
        ],
    ),
    sym(
        "depression",
        "a persistently low mood and loss of interest or pleasure in things, most of the day, nearly every day, for at least two weeks",
        "It often comes with poor sleep, tiredness and changes in appetite, and it is treatable.",
        [
            "migraine",
            "carpal tunnel syndrome",
            "hay fever (allergic rhinitis)",
        ],
    ),
    sym(
        "generalised anxiety disorder",
        "excessive, hard-to-control worry about many everyday things on most days, with restlessness, poor sleep and difficulty concentrating",
        "It is common and responds to talking therapies and, for some people, medicine.",
        [
            "Parkinson's disease",
            "asthma",
            "an underactive thyroid (hypothyroidism)",
        ],
    ),
    sym(
        "carpal tunnel syndrome",
        "numbness, tingling and pain in the thumb, index and middle fingers, often worse at night",
        "It is caused by pressure on the median nerve where it passes through the wrist.",
        ["gout", "Parkinson's disease", "eczema (atopic dermatitis)"],
    ),
    sym(
        "glaucoma (chronic open-angle)",
        "a gradual, painless loss of side (peripheral) vision that often goes unnoticed at first",
        "Regular eye tests can pick it up early, which matters because lost vision cannot be restored.",
        ["cataracts", "migraine", "hay fever (allergic rhinitis)"],
    ),
    sym(
        "cataracts",
        "cloudy or blurred vision, colours looking faded, and glare or halos around lights",
        "They are common with age and are treated with an operation that replaces the cloudy lens.",
        [
            "migraine",
            "hay fever (allergic rhinitis)",
            "conjunctivitis",
        ],
    ),
    sym(
        "heart failure",
        "breathlessness on exertion or when lying flat, tiredness and swollen ankles",
        "It means the heart is not pumping as well as it should, and treatment can improve both symptoms and survival.",
        ["asthma", "gout", "hay fever (allergic rhinitis)"],
    ),
    sym(
        "stable angina",
        "chest tightness or pain brought on by physical effort or emotional stress that eases within minutes of rest",
        "It is caused by narrowed heart arteries; chest pain that starts at rest or does not settle needs emergency care.",
        ["gallstones", "a stomach ulcer", "shingles"],
    ),
    sym(
        "hay fever (allergic rhinitis)",
        "sneezing, a runny or blocked nose and itchy, watery eyes, often at the same time each year",
        "It is an allergic reaction, most commonly to pollen.",
        ["influenza (flu)", "glaucoma", "migraine"],
    ),
    sym(
        "Lyme disease",
        "a spreading red rash, often shaped like a bull's-eye, appearing days to weeks after a tick bite, sometimes with flu-like symptoms",
        "It is a bacterial infection spread by ticks and is treated with antibiotics.",
        ["psoriasis", "eczema (atopic dermatitis)", "chickenpox"],
    ),
    sym(
        "pneumonia",
        "a cough with phlegm, fever, breathlessness and chest pain that is worse when breathing in",
        "It is an infection of the lung tissue; severe breathlessness, confusion or blue lips need emergency care.",
        [
            "hay fever (allergic rhinitis)",
            "gastro-oesophageal reflux disease (GORD)",
            "carpal tunnel syndrome",
        ],
    ),
    sym(
        "an enlarged prostate (benign prostatic hyperplasia)",
        "a weak urine stream, difficulty starting to pass urine, dribbling at the end and getting up at night to pass urine",
        "It is common in older men and is not cancer, but a doctor should check the symptoms.",
        ["kidney stones", "gout", "irritable bowel syndrome (IBS)"],
    ),
    sym(
        "Alzheimer's disease",
        "gradually worsening memory loss, especially for recent events, with confusion and difficulty finding words",
        "It is the most common cause of dementia.",
        ["migraine", "an ear infection", "glaucoma"],
    ),
];

/// First-line treatments (routine and emergency) and drug classes.
pub const TREATMENTS: &[TreatmentFact] = &[
    // Source kind: WHO/NICE first-line guidance as summarised in standard clinical textbooks.
    first(
        "type 2 diabetes",
        "metformin",
        "It is started alongside advice on diet, physical activity and weight, and kidney function is checked before and during treatment.",
        ["gliclazide", "insulin glargine", "pioglitazone"],
    ),
    first(
        "an underactive thyroid (hypothyroidism)",
        "levothyroxine",
        "It replaces the missing thyroid hormone, is usually taken for life and is adjusted with blood tests.",
        ["carbimazole", "propranolol", "hydrocortisone"],
    ),
    first(
        "type 1 diabetes",
        "insulin",
        "The body makes little or no insulin of its own, so insulin treatment is lifelong and must never simply be stopped.",
        ["metformin", "gliclazide", "a sugar-free diet alone"],
    ),
    first(
        "a streptococcal sore throat needing antibiotics",
        "penicillin V (phenoxymethylpenicillin)",
        "Many sore throats are caused by viruses and get better without antibiotics, and people allergic to penicillin are given a different antibiotic.",
        ["aciclovir", "fluconazole", "omeprazole"],
    ),
    first(
        "shingles",
        "an antiviral medicine such as aciclovir",
        "It works best when started within a few days of the rash appearing.",
        [
            "an antibiotic such as amoxicillin",
            "an antifungal cream",
            "a steroid cream alone",
        ],
    ),
    first(
        "vaginal thrush",
        "an antifungal medicine such as clotrimazole or fluconazole",
        "Thrush that keeps coming back should be checked by a doctor.",
        [
            "an antibiotic such as amoxicillin",
            "an antiviral such as aciclovir",
            "a steroid cream",
        ],
    ),
    first(
        "scabies",
        "permethrin cream",
        "Everyone in the household is usually treated at the same time, even without symptoms.",
        [
            "hydrocortisone cream",
            "clotrimazole cream",
            "an antihistamine tablet alone",
        ],
    ),
    first(
        "iron-deficiency anaemia",
        "oral iron supplements",
        "The cause of the iron deficiency, such as blood loss, must also be found and treated.",
        [
            "vitamin B12 injections",
            "vitamin D tablets",
            "folic acid alone",
        ],
    ),
    first(
        "pernicious anaemia",
        "vitamin B12 injections",
        "Pernicious anaemia stops vitamin B12 being absorbed from food, so the injections are usually needed for life.",
        ["oral iron tablets", "folic acid alone", "vitamin C tablets"],
    ),
    first(
        "gout that keeps coming back",
        "allopurinol, a urate-lowering medicine",
        "It lowers uric acid over months to prevent attacks; it does not treat an attack that has already started.",
        ["paracetamol", "prednisolone", "amoxicillin"],
    ),
    first(
        "Helicobacter pylori infection",
        "a proton pump inhibitor combined with two antibiotics",
        "Taking the whole course matters, and a repeat test may be used to check that the infection has gone.",
        [
            "an antacid alone",
            "a single antibiotic alone",
            "an NSAID such as ibuprofen",
        ],
    ),
    first(
        "uncomplicated cystitis in women",
        "a short course of an antibiotic such as nitrofurantoin",
        "A urine infection with fever or back pain, or during pregnancy, needs a doctor's assessment.",
        [
            "an antifungal such as fluconazole",
            "an antiviral such as aciclovir",
            "a proton pump inhibitor",
        ],
    ),
    first(
        "tuberculosis",
        "a combination of several antibiotics taken for at least six months",
        "Finishing the whole course is essential to cure the infection and prevent drug resistance.",
        [
            "a single short course of amoxicillin",
            "an antiviral medicine",
            "steroid tablets alone",
        ],
    ),
    first(
        "hay fever (allergic rhinitis)",
        "a non-drowsy antihistamine or a steroid nasal spray",
        "Avoiding the trigger, such as pollen, also helps.",
        [
            "an antibiotic",
            "an opioid painkiller",
            "a proton pump inhibitor",
        ],
    ),
    first(
        "Parkinson's disease",
        "levodopa",
        "It is combined with a second drug, such as carbidopa, that helps more of it reach the brain.",
        ["haloperidol", "metoclopramide", "amitriptyline"],
    ),
    first(
        "moderate to severe depression",
        "a talking therapy such as cognitive behavioural therapy, an antidepressant such as an SSRI, or both",
        "Antidepressants take a few weeks to work and should not be stopped suddenly.",
        [
            "a benzodiazepine",
            "an opioid painkiller",
            "an antipsychotic alone",
        ],
    ),
    first(
        "high cholesterol with a raised risk of heart disease",
        "a statin such as atorvastatin",
        "It is used alongside a healthy diet, regular exercise and not smoking.",
        [
            "a proton pump inhibitor",
            "an antibiotic",
            "a benzodiazepine",
        ],
    ),
    first(
        "atrial fibrillation with a raised risk of stroke",
        "an anticoagulant (blood thinner) such as apixaban",
        "Aspirin alone is not recommended for preventing stroke in atrial fibrillation.",
        ["aspirin alone", "a statin", "a beta blocker alone"],
    ),
    first(
        "croup in children",
        "a single dose of an oral steroid such as dexamethasone",
        "Most cases are mild, but a child with noisy breathing at rest, drawing in of the chest or blue lips needs emergency care.",
        [
            "an antibiotic such as amoxicillin",
            "a cough syrup",
            "an antihistamine",
        ],
    ),
    first(
        "an enlarged prostate (benign prostatic hyperplasia)",
        "an alpha blocker such as tamsulosin",
        "Cutting down on drinks in the evening and on caffeine can also help.",
        ["an antibiotic", "a statin", "a proton pump inhibitor"],
    ),
    first(
        "threadworms",
        "mebendazole",
        "Everyone in the household is usually treated, together with strict hand hygiene to stop reinfection.",
        ["amoxicillin", "fluconazole", "aciclovir"],
    ),
    first(
        "Addison's disease",
        "lifelong steroid replacement with hydrocortisone",
        "Steroid replacement must never be stopped suddenly, and extra is needed during illness on medical advice.",
        ["levothyroxine", "insulin", "metformin"],
    ),
    first(
        "erectile dysfunction",
        "a PDE5 inhibitor such as sildenafil",
        "It must not be combined with nitrate medicines, and possible causes such as heart disease or diabetes should be looked for.",
        ["a statin", "a beta blocker", "an antibiotic"],
    ),
    // Source kind: emergency medicine and toxicology first-line treatment (resuscitation
    // council and poisons guidance as taught in textbooks).
    emergency(
        "anaphylaxis",
        "intramuscular adrenaline (epinephrine)",
        "It is injected into the outer thigh, usually with an auto-injector, and emergency services must be called even if the person improves.",
        [
            "an oral antihistamine",
            "a salbutamol inhaler",
            "oral prednisolone",
        ],
    ),
    emergency(
        "an opioid overdose",
        "naloxone",
        "It reverses the effects of opioids but can wear off before they do, so emergency services must always be called.",
        ["flumazenil", "activated charcoal", "atropine"],
    ),
    emergency(
        "a paracetamol overdose",
        "acetylcysteine",
        "It protects the liver and works best when given early, so anyone who has taken too much paracetamol needs emergency assessment even if they feel well.",
        ["naloxone", "vitamin K", "flumazenil"],
    ),
    emergency(
        "cardiac arrest",
        "cardiopulmonary resuscitation (CPR) and defibrillation as soon as possible",
        "Calling emergency services and starting chest compressions straight away greatly improves the chance of survival.",
        [
            "oral aspirin",
            "the recovery position and waiting",
            "a sugary drink",
        ],
    ),
    emergency(
        "bleeding caused by warfarin",
        "vitamin K",
        "In major bleeding, hospitals also give a concentrate of clotting factors.",
        ["protamine sulfate", "naloxone", "acetylcysteine"],
    ),
    emergency(
        "Wernicke's encephalopathy",
        "thiamine (vitamin B1)",
        "It is caused by a lack of thiamine, most often in people who drink heavily, and needs treatment in hospital.",
        ["vitamin C", "glucose alone", "naloxone"],
    ),
    // Source kind: standard pharmacology (drug classification as in any pharmacology text or
    // national formulary).
    class(
        "metformin",
        "a biguanide",
        "It lowers blood glucose mainly by reducing the amount of glucose released by the liver.",
        ["a sulfonylurea", "a statin", "an ACE inhibitor"],
    ),
    class(
        "atorvastatin",
        "a statin (HMG-CoA reductase inhibitor)",
        "Statins lower LDL cholesterol by reducing how much the liver makes.",
        ["a fibrate", "a beta blocker", "a proton pump inhibitor"],
    ),
    class(
        "ramipril",
        "an ACE inhibitor",
        "A dry cough is a common side effect of this class.",
        [
            "an angiotensin receptor blocker",
            "a beta blocker",
            "a calcium channel blocker",
        ],
    ),
    class(
        "losartan",
        "an angiotensin receptor blocker (ARB)",
        "ARBs are often used when an ACE inhibitor causes a cough.",
        ["an ACE inhibitor", "a loop diuretic", "a beta blocker"],
    ),
    class(
        "amlodipine",
        "a calcium channel blocker",
        "Ankle swelling is a common side effect.",
        ["a beta blocker", "an ACE inhibitor", "a thiazide diuretic"],
    ),
    class(
        "bisoprolol",
        "a beta blocker",
        "Beta blockers slow the heart rate.",
        ["a calcium channel blocker", "an ACE inhibitor", "a statin"],
    ),
    class(
        "omeprazole",
        "a proton pump inhibitor (PPI)",
        "It reduces the amount of acid the stomach makes.",
        ["an H2 receptor blocker", "a laxative", "an antihistamine"],
    ),
    class(
        "sertraline",
        "a selective serotonin reuptake inhibitor (SSRI)",
        "SSRIs are widely used for depression and anxiety disorders.",
        [
            "a tricyclic antidepressant",
            "a benzodiazepine",
            "a monoamine oxidase inhibitor",
        ],
    ),
    class(
        "amoxicillin",
        "a penicillin antibiotic",
        "People with a penicillin allergy must not take it.",
        ["a macrolide antibiotic", "an antifungal", "an antiviral"],
    ),
    class(
        "ibuprofen",
        "a non-steroidal anti-inflammatory drug (NSAID)",
        "NSAIDs can irritate the stomach and affect the kidneys.",
        [
            "an opioid painkiller",
            "a corticosteroid",
            "an antihistamine",
        ],
    ),
    class(
        "warfarin",
        "a vitamin K antagonist anticoagulant",
        "Its effect is monitored with regular INR blood tests.",
        ["an antiplatelet drug", "a statin", "a beta blocker"],
    ),
    class(
        "apixaban",
        "a direct oral anticoagulant (factor Xa inhibitor)",
        "Unlike warfarin, it does not need routine INR monitoring.",
        [
            "a vitamin K antagonist",
            "an antiplatelet drug",
            "a thrombolytic",
        ],
    ),
    class(
        "furosemide",
        "a loop diuretic",
        "It makes the kidneys pass more salt and water and is used for fluid build-up in heart failure.",
        [
            "a thiazide diuretic",
            "a potassium-sparing diuretic",
            "a beta blocker",
        ],
    ),
    class(
        "hydrochlorothiazide",
        "a thiazide diuretic",
        "Thiazide diuretics are used to treat high blood pressure.",
        [
            "a loop diuretic",
            "an ACE inhibitor",
            "a calcium channel blocker",
        ],
    ),
    class(
        "salbutamol",
        "a short-acting beta-2 agonist",
        "It relaxes the airways quickly and is used in reliever inhalers.",
        [
            "an inhaled corticosteroid",
            "a beta blocker",
            "an antihistamine",
        ],
    ),
    class(
        "morphine",
        "an opioid analgesic",
        "Opioids can slow breathing and cause constipation and dependence.",
        ["an NSAID", "a benzodiazepine", "a local anaesthetic"],
    ),
    class(
        "diazepam",
        "a benzodiazepine",
        "Benzodiazepines cause drowsiness and dependence and are dangerous combined with alcohol or opioids.",
        ["an SSRI", "an opioid", "an antipsychotic"],
    ),
    class(
        "levothyroxine",
        "a synthetic thyroid hormone",
        "It replaces the hormone that an underactive thyroid does not make.",
        ["an antithyroid drug", "a corticosteroid", "a beta blocker"],
    ),
    class(
        "prednisolone",
        "a corticosteroid",
        "Long courses must not be stopped suddenly because the body's own steroid production is suppressed.",
        ["an NSAID", "an anabolic steroid", "an antihistamine"],
    ),
    class(
        "cetirizine",
        "a non-sedating antihistamine",
        "It is used for hay fever and itchy allergic rashes.",
        ["a corticosteroid", "a decongestant", "a beta-2 agonist"],
    ),
    class(
        "gliclazide",
        "a sulfonylurea",
        "Sulfonylureas can cause low blood sugar (hypoglycaemia).",
        ["a biguanide", "an SGLT2 inhibitor", "a statin"],
    ),
    class(
        "clopidogrel",
        "an antiplatelet drug",
        "It makes platelets less sticky and is often used after a heart attack or a stent.",
        ["an anticoagulant", "a statin", "a beta blocker"],
    ),
    class(
        "aciclovir",
        "an antiviral",
        "It is used against herpes viruses, including those that cause cold sores, chickenpox and shingles.",
        ["an antibiotic", "an antifungal", "an antihistamine"],
    ),
    class(
        "fluconazole",
        "an azole antifungal",
        "It treats yeast infections such as thrush.",
        ["an antibiotic", "an antiviral", "an antihistamine"],
    ),
    class(
        "clarithromycin",
        "a macrolide antibiotic",
        "It is a common alternative for people who are allergic to penicillin.",
        ["a penicillin antibiotic", "an antifungal", "an antiviral"],
    ),
    class(
        "tamsulosin",
        "an alpha blocker",
        "It relaxes the muscle of the prostate and bladder neck so that urine flows more easily.",
        [
            "a beta blocker",
            "a 5-alpha reductase inhibitor",
            "a loop diuretic",
        ],
    ),
    class(
        "sumatriptan",
        "a triptan",
        "Triptans are taken when a migraine headache starts.",
        ["an opioid", "a beta blocker", "a benzodiazepine"],
    ),
    class(
        "empagliflozin",
        "an SGLT2 inhibitor",
        "It lowers blood glucose by making the kidneys pass more glucose into the urine.",
        ["a DPP-4 inhibitor", "a sulfonylurea", "a biguanide"],
    ),
    class(
        "amitriptyline",
        "a tricyclic antidepressant",
        "In low doses it is also used for nerve pain.",
        ["an SSRI", "a benzodiazepine", "an anticonvulsant"],
    ),
    class(
        "haloperidol",
        "an antipsychotic",
        "Antipsychotics can cause movement side effects such as stiffness and tremor.",
        ["an antidepressant", "a benzodiazepine", "a mood stabiliser"],
    ),
    class(
        "spironolactone",
        "a potassium-sparing diuretic (aldosterone antagonist)",
        "It can raise blood potassium, so blood tests are needed during treatment.",
        ["a loop diuretic", "a thiazide diuretic", "an ACE inhibitor"],
    ),
    class(
        "ondansetron",
        "an antiemetic (5-HT3 receptor antagonist)",
        "It is used to prevent and treat nausea and vomiting.",
        [
            "an H2 receptor blocker",
            "a proton pump inhibitor",
            "a laxative",
        ],
    ),
];

/// Contraindications and dangerous combinations. Source kind: standard pharmacology and
/// national formulary contraindications (BNF/FDA labelling as summarised in textbooks).
pub const CONTRAINDICATIONS: &[ContraFact] = &[
    contra(
        "ACE inhibitors",
        "pregnancy",
        "I've just found out I'm pregnant",
        "they can harm the unborn baby's kidneys and growth",
        [
            "high blood pressure",
            "heart failure",
            "recovery after a heart attack",
        ],
    ),
    contra(
        "NSAIDs such as ibuprofen",
        "active peptic ulcer disease",
        "I have a stomach ulcer that is still being treated",
        "they can make the ulcer bleed or perforate",
        ["osteoarthritis pain", "period pain", "sprains and strains"],
    ),
    contra(
        "aspirin",
        "children under 16",
        "My 12-year-old has the flu and a temperature",
        "it can cause Reye's syndrome, a rare but serious illness affecting the liver and brain",
        [
            "adults after a heart attack",
            "adults with stable angina",
            "adults after an ischaemic stroke",
        ],
    ),
    contra(
        "warfarin",
        "pregnancy",
        "I take warfarin and I think I might be pregnant",
        "it can cause birth defects and bleeding in the baby",
        [
            "atrial fibrillation",
            "deep vein thrombosis",
            "a mechanical heart valve",
        ],
    ),
    contra(
        "isotretinoin",
        "pregnancy",
        "I'm hoping to get pregnant soon",
        "it causes severe birth defects, so strict pregnancy prevention is required during treatment",
        [
            "severe nodular acne",
            "acne that has not responded to antibiotics",
            "acne that is causing scarring",
        ],
    ),
    contra(
        "methotrexate",
        "pregnancy",
        "My partner and I are trying for a baby and I might already be pregnant",
        "it can cause miscarriage and birth defects",
        [
            "rheumatoid arthritis",
            "severe psoriasis",
            "Crohn's disease",
        ],
    ),
    contra(
        "non-selective beta blockers such as propranolol",
        "asthma",
        "I have asthma",
        "they can trigger severe narrowing of the airways",
        [
            "migraine prevention",
            "essential tremor",
            "the physical symptoms of anxiety",
        ],
    ),
    contra(
        "metformin",
        "severe kidney impairment",
        "I've been told my kidneys are working very poorly",
        "it can build up and cause lactic acidosis",
        [
            "newly diagnosed type 2 diabetes",
            "type 2 diabetes with excess weight",
            "type 2 diabetes with normal kidney function",
        ],
    ),
    contra(
        "sildenafil",
        "people taking nitrate medicines such as glyceryl trinitrate",
        "I use a GTN spray for angina",
        "the combination can cause a dangerous drop in blood pressure",
        [
            "men with erectile dysfunction",
            "men with erectile dysfunction and diabetes",
            "people with pulmonary arterial hypertension",
        ],
    ),
    contra(
        "sumatriptan",
        "people with coronary heart disease or a previous heart attack or stroke",
        "I had a heart attack last year",
        "triptans narrow blood vessels, including the arteries of the heart",
        [
            "people having an acute migraine attack",
            "people with menstrual migraine",
            "people with cluster headache",
        ],
    ),
    contra(
        "the combined oral contraceptive pill",
        "migraine with aura",
        "I get migraines with aura",
        "it increases the risk of stroke",
        [
            "contraception in healthy non-smokers",
            "heavy periods",
            "painful periods",
        ],
    ),
    contra(
        "the combined oral contraceptive pill",
        "women aged 35 or over who smoke",
        "I'm 38 and I smoke",
        "the combination greatly increases the risk of heart attack, stroke and blood clots",
        [
            "women under 35 who do not smoke and want contraception",
            "women who do not smoke and have heavy periods",
            "women who do not smoke and have acne",
        ],
    ),
    contra(
        "the MMR vaccine",
        "pregnancy",
        "I'm pregnant and not sure whether I ever had the MMR jab",
        "live vaccines are avoided in pregnancy as a precaution",
        [
            "routine childhood immunisation",
            "catch-up vaccination of adults not immune to measles",
            "vaccination of health workers without proof of immunity",
        ],
    ),
    contra(
        "simvastatin",
        "people taking clarithromycin",
        "I've been prescribed clarithromycin for a chest infection",
        "the antibiotic raises simvastatin levels and the risk of serious muscle damage",
        [
            "people with high cholesterol",
            "people who have had a heart attack",
            "people with type 2 diabetes and a raised risk of heart disease",
        ],
    ),
    contra(
        "sertraline",
        "people taking a monoamine oxidase inhibitor (MAOI)",
        "I already take an MAOI antidepressant",
        "the combination can cause serotonin syndrome",
        [
            "people with depression",
            "people with generalised anxiety disorder",
            "people with obsessive-compulsive disorder",
        ],
    ),
    contra(
        "metronidazole",
        "people who drink alcohol during the course",
        "I'm going to a party this weekend and plan to drink",
        "the combination can cause flushing, vomiting and a racing heart",
        [
            "people with bacterial vaginosis",
            "people with a dental infection",
            "people with trichomoniasis",
        ],
    ),
    contra(
        "ibuprofen",
        "people taking warfarin",
        "I take warfarin",
        "the combination greatly raises the risk of serious bleeding",
        [
            "people with back pain",
            "people with a sprained ankle",
            "people with toothache",
        ],
    ),
    contra(
        "spironolactone",
        "people with a high blood potassium level (hyperkalaemia)",
        "My last blood test showed a high potassium level",
        "it makes the body hold on to potassium, which can cause dangerous heart rhythms",
        [
            "people with heart failure",
            "people with resistant high blood pressure",
            "people with fluid build-up from liver cirrhosis",
        ],
    ),
    contra(
        "diazepam",
        "people who drink alcohol",
        "I usually have a few drinks every evening",
        "together they can dangerously slow breathing",
        [
            "people needing short-term relief of severe anxiety",
            "people with muscle spasm",
            "people having a prolonged seizure",
        ],
    ),
    contra(
        "loperamide",
        "bloody diarrhoea with a fever",
        "I have diarrhoea with blood in it and a high temperature",
        "it can keep an invasive gut infection in the body and make it worse",
        [
            "short-term acute diarrhoea in adults",
            "traveller's diarrhoea without blood or fever",
            "diarrhoea from irritable bowel syndrome",
        ],
    ),
    contra(
        "codeine",
        "children under 12",
        "My 9-year-old has bad toothache",
        "some children turn codeine into morphine very quickly, which can dangerously slow their breathing",
        [
            "adults with short-term moderate pain",
            "adults with pain after minor surgery",
            "adults with acute pain not helped by paracetamol or ibuprofen",
        ],
    ),
    contra(
        "decongestants such as pseudoephedrine",
        "people with uncontrolled high blood pressure",
        "My blood pressure is high and not yet under control",
        "they can push blood pressure up further",
        [
            "people with a blocked nose from a cold",
            "people with sinus congestion",
            "people with a blocked nose from hay fever",
        ],
    ),
    contra(
        "clot-busting (thrombolytic) drugs",
        "stroke caused by bleeding in the brain",
        "The scan shows my mother's stroke was caused by bleeding in the brain",
        "they would make the bleeding worse",
        [
            "stroke caused by a clot, within the treatment window",
            "massive pulmonary embolism",
            "heart attacks when emergency angioplasty is not available",
        ],
    ),
    contra(
        "metoclopramide",
        "Parkinson's disease",
        "I have Parkinson's disease",
        "it blocks dopamine and can make movement symptoms much worse",
        [
            "nausea and vomiting after surgery",
            "nausea with migraine",
            "nausea caused by some medicines",
        ],
    ),
    contra(
        "haloperidol",
        "dementia with Lewy bodies",
        "My father has dementia with Lewy bodies",
        "people with this condition can have severe, sometimes life-threatening reactions to antipsychotics",
        [
            "schizophrenia",
            "acute mania",
            "delirium with severe agitation",
        ],
    ),
    contra(
        "ramipril",
        "people who have had angioedema with an ACE inhibitor",
        "My lips and tongue once swelled up badly while I was on an ACE inhibitor",
        "it can trigger another, possibly life-threatening, episode of swelling",
        [
            "people with high blood pressure",
            "people with heart failure",
            "people with chronic kidney disease and protein in the urine",
        ],
    ),
    contra(
        "antimuscarinics such as oxybutynin",
        "untreated angle-closure glaucoma",
        "I've been told I have narrow-angle glaucoma that hasn't been treated yet",
        "they can raise the pressure in the eye and trigger an acute attack",
        [
            "overactive bladder",
            "urge incontinence",
            "bedwetting in older children",
        ],
    ),
    contra(
        "nitrofurantoin",
        "severe kidney impairment",
        "I have severe chronic kidney disease",
        "it works poorly and can build up and cause side effects such as nerve damage",
        [
            "uncomplicated cystitis in women",
            "prevention of recurring urine infections",
            "a lower urinary tract infection with normal kidney function",
        ],
    ),
    contra(
        "bisoprolol",
        "people with second- or third-degree heart block",
        "I've been told my heart is very slow because of heart block",
        "it slows the heart's electrical conduction even further",
        [
            "people with heart failure",
            "people with angina",
            "people with atrial fibrillation",
        ],
    ),
    contra(
        "oestrogen-containing hormone replacement therapy (HRT)",
        "women who have had breast cancer",
        "I was treated for breast cancer a few years ago",
        "oestrogen can stimulate some breast cancers to come back",
        [
            "women with hot flushes of the menopause",
            "women with night sweats of the menopause",
            "women with premature menopause",
        ],
    ),
    contra(
        "tramadol",
        "poorly controlled epilepsy",
        "My epilepsy isn't well controlled at the moment",
        "it lowers the seizure threshold and can trigger fits",
        [
            "moderate acute pain",
            "pain after an operation",
            "severe pain not helped by simpler painkillers",
        ],
    ),
];

use Specialist::*;

/// Which specialist looks after a condition. Source kind: standard referral pathways as
/// described in clinical textbooks (the specialty that owns the condition).
pub const SPECIALISTS: &[SpecialistFact] = &[
    spec(
        "cataracts",
        Ophthalmologist,
        [Dermatologist, Neurologist, Ent],
    ),
    spec(
        "glaucoma",
        Ophthalmologist,
        [Cardiologist, Ent, Rheumatologist],
    ),
    spec(
        "age-related macular degeneration",
        Ophthalmologist,
        [Neurologist, Dermatologist, Endocrinologist],
    ),
    spec(
        "psoriasis",
        Dermatologist,
        [Allergist, Ophthalmologist, Nephrologist],
    ),
    spec(
        "severe acne",
        Dermatologist,
        [Gastroenterologist, Allergist, Ent],
    ),
    spec(
        "a mole that is changing in size, shape or colour",
        Dermatologist,
        [Cardiologist, Ent, Allergist],
    ),
    spec(
        "epilepsy",
        Neurologist,
        [Psychiatrist, Cardiologist, Rheumatologist],
    ),
    spec(
        "Parkinson's disease",
        Neurologist,
        [Psychiatrist, OrthopaedicSurgeon, Rheumatologist],
    ),
    spec(
        "multiple sclerosis",
        Neurologist,
        [Rheumatologist, Haematologist, Dermatologist],
    ),
    spec(
        "migraine that is hard to control",
        Neurologist,
        [Ent, Ophthalmologist, Psychiatrist],
    ),
    spec(
        "atrial fibrillation",
        Cardiologist,
        [RespiratoryPhysician, Neurologist, Haematologist],
    ),
    spec(
        "heart failure",
        Cardiologist,
        [RespiratoryPhysician, Nephrologist, Gastroenterologist],
    ),
    spec(
        "a heart valve problem",
        Cardiologist,
        [RespiratoryPhysician, Rheumatologist, Haematologist],
    ),
    spec(
        "type 1 diabetes",
        Endocrinologist,
        [Gastroenterologist, Nephrologist, Cardiologist],
    ),
    spec(
        "an overactive thyroid (hyperthyroidism)",
        Endocrinologist,
        [Cardiologist, Psychiatrist, Dermatologist],
    ),
    spec(
        "Addison's disease",
        Endocrinologist,
        [Nephrologist, Gastroenterologist, Dermatologist],
    ),
    spec(
        "Crohn's disease",
        Gastroenterologist,
        [Nephrologist, Rheumatologist, Urologist],
    ),
    spec(
        "ulcerative colitis",
        Gastroenterologist,
        [Urologist, Haematologist, Cardiologist],
    ),
    spec(
        "coeliac disease",
        Gastroenterologist,
        [Allergist, Nephrologist, Cardiologist],
    ),
    spec(
        "chronic kidney disease",
        Nephrologist,
        [Urologist, Gastroenterologist, Endocrinologist],
    ),
    spec(
        "kidney stones",
        Urologist,
        [Gastroenterologist, Gynaecologist, OrthopaedicSurgeon],
    ),
    spec(
        "an enlarged prostate (benign prostatic hyperplasia)",
        Urologist,
        [Gastroenterologist, Endocrinologist, OrthopaedicSurgeon],
    ),
    spec(
        "chronic obstructive pulmonary disease (COPD)",
        RespiratoryPhysician,
        [Cardiologist, Ent, Allergist],
    ),
    spec(
        "pulmonary fibrosis",
        RespiratoryPhysician,
        [Cardiologist, Ent, Gastroenterologist],
    ),
    spec(
        "rheumatoid arthritis",
        Rheumatologist,
        [OrthopaedicSurgeon, Neurologist, Dermatologist],
    ),
    spec(
        "lupus (systemic lupus erythematosus)",
        Rheumatologist,
        [Cardiologist, Gastroenterologist, OrthopaedicSurgeon],
    ),
    spec(
        "ankylosing spondylitis",
        Rheumatologist,
        [OrthopaedicSurgeon, Neurologist, Urologist],
    ),
    spec(
        "chronic sinusitis",
        Ent,
        [RespiratoryPhysician, Neurologist, Ophthalmologist],
    ),
    spec(
        "recurrent tonsillitis",
        Ent,
        [Gastroenterologist, RespiratoryPhysician, Haematologist],
    ),
    spec(
        "schizophrenia",
        Psychiatrist,
        [Neurologist, Endocrinologist, Cardiologist],
    ),
    spec(
        "bipolar disorder",
        Psychiatrist,
        [Neurologist, Endocrinologist, Rheumatologist],
    ),
    spec(
        "sickle cell disease",
        Haematologist,
        [Cardiologist, Rheumatologist, Nephrologist],
    ),
    spec(
        "haemophilia",
        Haematologist,
        [OrthopaedicSurgeon, Rheumatologist, Dermatologist],
    ),
    spec(
        "endometriosis",
        Gynaecologist,
        [Gastroenterologist, Urologist, Rheumatologist],
    ),
    spec(
        "a high-risk pregnancy",
        Obstetrician,
        [Cardiologist, Endocrinologist, Urologist],
    ),
    spec(
        "a hip fracture",
        OrthopaedicSurgeon,
        [Rheumatologist, Neurologist, Cardiologist],
    ),
    spec(
        "a severe peanut allergy",
        Allergist,
        [Gastroenterologist, Dermatologist, Ent],
    ),
];

/// Red-flag symptoms needing emergency care. Source kind: emergency medicine and first-aid red
/// flags (ambulance service, resuscitation council and NICE red-flag lists as taught).
pub const RED_FLAGS: &[RedFlagFact] = &[
    flag(
        "sudden drooping of one side of the face, weakness in one arm and slurred speech",
        "My father's face has suddenly dropped on one side, he can't lift his left arm and his speech is slurred",
        "a stroke",
        "Stroke treatment works best in the first few hours, so every minute counts.",
        ["a migraine", "tiredness", "a trapped nerve in the neck"],
    ),
    flag(
        "crushing or heavy chest pain that may spread to the arm, jaw or back, with sweating and feeling sick",
        "I've had heavy pain in my chest for twenty minutes, it's spreading into my left arm and I'm sweating",
        "a heart attack",
        "Quick treatment to reopen the blocked artery saves heart muscle and lives.",
        ["indigestion", "a pulled chest muscle", "a panic attack"],
    ),
    flag(
        "a sudden, severe headache that peaks within seconds to minutes, often described as the worst ever",
        "I suddenly got the worst headache of my life a few minutes ago, like being hit on the back of the head",
        "bleeding around the brain (subarachnoid haemorrhage)",
        "This kind of bleed needs urgent scans and specialist treatment.",
        ["a tension-type headache", "sinusitis", "eye strain"],
    ),
    flag(
        "fever with a stiff neck, a rash that does not fade under a pressed glass, or unusual drowsiness",
        "My son has a high temperature, a stiff neck and a rash that doesn't fade when I press a glass on it",
        "meningitis or sepsis",
        "These infections can become life-threatening within hours, and early antibiotics save lives.",
        ["a common cold", "a heat rash", "eczema"],
    ),
    flag(
        "swelling of the lips, tongue or throat, difficulty breathing or feeling faint after a food, a medicine or a sting",
        "My friend was stung by a wasp and now her lips and tongue are swelling and she's struggling to breathe",
        "anaphylaxis",
        "Anaphylaxis can block the airway within minutes, so use an adrenaline auto-injector if there is one while help is on the way.",
        ["a mild local reaction", "hay fever", "a panic attack"],
    ),
    flag(
        "sudden breathlessness with sharp chest pain that is worse on breathing in, especially after surgery, a long journey or with a swollen calf",
        "I had an operation last week and now I'm suddenly short of breath with a sharp pain in my chest when I breathe in",
        "a blood clot in the lungs (pulmonary embolism)",
        "A clot in the lungs can be fatal and needs urgent treatment in hospital.",
        ["a chest cold", "anxiety", "a pulled muscle"],
    ),
    flag(
        "vomiting blood or passing black, tarry stools",
        "I've just vomited what looks like blood, and my stools have been black and sticky",
        "bleeding from the stomach or upper gut",
        "Heavy bleeding from the gut can quickly lead to shock.",
        ["food poisoning", "a stomach bug", "indigestion"],
    ),
    flag(
        "sudden, severe pain in one testicle, sometimes with swelling, nausea or tummy pain",
        "My teenage son woke up with sudden, severe pain in one testicle and he's being sick",
        "testicular torsion",
        "The testicle can usually be saved only if surgery happens within a few hours.",
        [
            "a groin strain",
            "a urinary tract infection",
            "a sports bruise",
        ],
    ),
    flag(
        "new flashes of light, a shower of floaters, or a shadow or curtain moving across the vision",
        "I've suddenly started seeing flashes and lots of floaters, and now there's a dark curtain over part of the vision in one eye",
        "a detached retina",
        "Urgent treatment can prevent permanent loss of sight.",
        ["tired eyes", "dry eyes", "needing new glasses"],
    ),
    flag(
        "a painful red eye with blurred vision, haloes around lights, headache and vomiting",
        "My eye suddenly became very painful and red, my vision is blurry with rainbow haloes and I've been sick",
        "acute angle-closure glaucoma",
        "The pressure inside the eye has to be lowered quickly to save the sight.",
        ["conjunctivitis", "hay fever", "a stye"],
    ),
    flag(
        "confusion, very fast breathing, a racing heart, mottled or bluish skin, or feeling extremely unwell during an infection",
        "My mum has a urine infection and now she's confused, breathing fast and her skin looks blotchy",
        "sepsis",
        "Sepsis can cause organ failure quickly, and every hour of delay in treatment matters.",
        ["a bad cold", "old age", "tiredness"],
    ),
    flag(
        "vomiting, tummy pain, deep rapid breathing, fruity-smelling breath and drowsiness in someone with diabetes",
        "My daughter has type 1 diabetes and she's vomiting, breathing deeply and fast, and her breath smells fruity",
        "diabetic ketoacidosis (DKA)",
        "DKA needs urgent fluids and insulin in hospital.",
        ["a stomach bug", "food poisoning", "anxiety"],
    ),
    flag(
        "confusion, drowsiness or unconsciousness in someone who uses insulin",
        "My husband uses insulin and he's very drowsy, confused and can't swallow properly",
        "severe hypoglycaemia (very low blood sugar)",
        "Someone who cannot swallow safely must not be given food or drink by mouth; they need glucagon or emergency treatment.",
        ["tiredness", "being drunk", "a migraine"],
    ),
    flag(
        "unresponsiveness with very slow or stopped breathing and pinpoint pupils after taking opioids",
        "My friend took some strong painkillers and now he won't wake up, his breathing is very slow and his pupils are tiny",
        "an opioid overdose",
        "Naloxone, if there is some, can reverse it, but emergency services are still needed because it can wear off.",
        ["deep sleep", "being drunk", "exhaustion"],
    ),
    flag(
        "a seizure lasting longer than five minutes, or seizures one after another without waking in between",
        "My friend has been having a fit for more than five minutes and it isn't stopping",
        "status epilepticus",
        "Prolonged seizures can damage the brain and need emergency medicine to stop them.",
        [
            "a faint",
            "a panic attack",
            "a short seizure that will stop by itself",
        ],
    ),
    flag(
        "new back pain with numbness around the genitals or buttocks, leg weakness, or loss of bladder or bowel control",
        "I've had bad back pain for a few days and now my bottom feels numb and I can't control my bladder properly",
        "cauda equina syndrome",
        "Pressure on these nerves has to be relieved urgently to prevent permanent paralysis and incontinence.",
        [
            "a pulled back muscle",
            "ordinary sciatica",
            "a urinary tract infection",
        ],
    ),
    flag(
        "sharp pain low on one side of the tummy, vaginal bleeding or shoulder-tip pain in early pregnancy",
        "I'm about seven weeks pregnant and I have sharp pain low on one side, some bleeding and pain in the tip of my shoulder",
        "an ectopic pregnancy",
        "A ruptured ectopic pregnancy can cause life-threatening internal bleeding.",
        [
            "normal pregnancy cramps",
            "constipation",
            "a urinary tract infection",
        ],
    ),
    flag(
        "being too breathless to speak in full sentences, blue lips, or a reliever inhaler that is not helping during an asthma attack",
        "My son's asthma is really bad, his reliever isn't working, he can't finish a sentence and his lips look blue",
        "a life-threatening asthma attack",
        "A severe attack can stop someone breathing, so keep using the reliever as advised while help is on the way.",
        ["a mild wheeze", "a chest cold", "anxiety"],
    ),
    flag(
        "sudden, severe tearing or ripping chest pain that goes through to the back",
        "I've suddenly got a terrible tearing pain in my chest that goes straight through to my back",
        "a tear in the aorta (aortic dissection)",
        "Aortic dissection needs emergency surgery or intensive care.",
        ["a pulled back muscle", "indigestion", "a trapped nerve"],
    ),
    flag(
        "noisy or difficult breathing, blue lips, or the skin sucking in between the ribs in a baby or child",
        "My baby is struggling to breathe, the skin is sucking in between her ribs and her lips look bluish",
        "severe breathing difficulty (respiratory distress)",
        "Young children can tire quickly and stop breathing effectively.",
        ["a blocked nose", "teething", "a normal cold"],
    ),
    flag(
        "drowsiness, confusion, repeated vomiting or a worsening headache after a head injury",
        "My dad hit his head yesterday and today he's confused, drowsy and keeps being sick",
        "bleeding inside the skull after a head injury",
        "A bleed can press on the brain and needs an urgent scan and possibly surgery.",
        ["a hangover", "tiredness", "a stomach bug"],
    ),
    flag(
        "thoughts of suicide together with a plan or the means to carry it out",
        "My friend has just told me he has a plan to kill himself tonight",
        "a suicidal crisis",
        "Staying with the person and getting immediate help can save their life.",
        ["normal sadness", "attention-seeking", "a bad day"],
    ),
    flag(
        "hot skin, confusion, a very high body temperature and sometimes no sweating after time in the heat",
        "My grandad has been out in the sun all day and now he's confused, very hot and has stopped sweating",
        "heatstroke",
        "Heatstroke can damage the brain and other organs, so start cooling the person while waiting for help.",
        ["mild dehydration", "tiredness", "sunburn"],
    ),
    flag(
        "sudden, severe tummy pain with a hard, rigid abdomen that hurts more with any movement",
        "I've suddenly got terrible pain all over my tummy, it's rock hard and it hurts to move at all",
        "a perforated bowel or peritonitis",
        "This usually needs emergency surgery.",
        ["trapped wind", "constipation", "period pain"],
    ),
    flag(
        "being suddenly unable to speak, cough or breathe while eating",
        "A man at the next table is clutching his throat and can't speak, cough or breathe",
        "a blocked airway from choking",
        "Give back blows and abdominal thrusts if you know how, and get emergency help straight away.",
        ["hiccups", "a panic attack", "heartburn"],
    ),
    flag(
        "a suddenly cold, pale and painful arm or leg with weak or absent pulses",
        "My leg has suddenly gone cold, pale and very painful, and I can't feel a pulse in my foot",
        "a blocked artery to the limb (acute limb ischaemia)",
        "Blood flow has to be restored within hours to save the limb.",
        ["cramp", "a sprain", "sitting still for too long"],
    ),
    flag(
        "a painful erection lasting more than four hours",
        "I've had a painful erection for over four hours and it won't go down",
        "priapism",
        "Without emergency treatment it can permanently damage the penis.",
        [
            "a normal reaction",
            "a side effect that will pass by itself",
            "a muscle strain",
        ],
    ),
    flag(
        "headache, dizziness, nausea and drowsiness in several people in the same home that ease when they go outside",
        "Everyone in our house has headaches, dizziness and nausea, and we feel better when we go outside",
        "carbon monoxide poisoning",
        "Get everyone out into fresh air and do not go back in until the source has been checked.",
        ["a stomach bug", "food poisoning", "seasonal flu"],
    ),
    flag(
        "heavy bleeding from a wound that does not stop with firm pressure",
        "I've cut my arm badly and the blood is still pouring out even though I'm pressing on it",
        "major blood loss",
        "Keep pressing firmly on the wound while waiting for help.",
        ["a minor cut", "a nosebleed", "a graze"],
    ),
    flag(
        "confusion, drowsiness, slow breathing and no shivering in someone who has been very cold",
        "We found our elderly neighbour in her freezing house, she's confused and drowsy and has stopped shivering",
        "severe hypothermia",
        "Warm the person gently with blankets while waiting for help.",
        ["old age", "tiredness", "a mild cold"],
    ),
    flag(
        "sudden loss of consciousness with no normal breathing",
        "My colleague has just collapsed, he isn't responding and he isn't breathing normally",
        "cardiac arrest",
        "Start chest compressions and use a defibrillator if one is available; the call handler can guide you.",
        ["a simple faint", "low blood sugar", "exhaustion"],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_at_least_160_facts_and_25_per_kind() {
        let total: usize = counts().iter().map(|(_, n)| n).sum();
        assert!(total >= 160, "{total} facts");
        for (kind, n) in counts() {
            assert!(n >= 25, "{}: {n}", kind.name());
        }
    }

    #[test]
    fn table_validates() {
        assert_eq!(validate(), Ok(()));
    }

    #[test]
    fn topics_join_kinds() {
        assert_eq!(
            normalise_topic("An overactive thyroid (hyperthyroidism)"),
            "overactive thyroid"
        );
        let facts = all();
        let parkinson: Vec<Kind> = facts
            .iter()
            .filter(|f| f.topic() == "parkinson's disease")
            .map(|f| f.kind())
            .collect();
        assert_eq!(
            parkinson,
            [Kind::Symptom, Kind::Treatment, Kind::Specialist]
        );
    }

    /// A right answer must not stand out by its form: when a contraindication names a group of
    /// people, so do its wrong alternatives, and the other way round.
    #[test]
    fn contraindication_choices_are_parallel_in_form() {
        let people = |s: &str| {
            ["people ", "women ", "men ", "children ", "adults "]
                .iter()
                .any(|p| s.starts_with(p))
        };
        for f in CONTRAINDICATIONS {
            for w in f.wrong {
                assert_eq!(people(f.situation), people(w), "{}: {w}", f.situation);
            }
        }
    }

    #[test]
    fn fragments_have_their_documented_shape() {
        for f in SYMPTOMS {
            assert!(f.note.ends_with('.'), "{}", f.note);
            assert!(!f.symptoms.ends_with('.'), "{}", f.symptoms);
        }
        for f in TREATMENTS {
            assert!(f.note.ends_with('.'), "{}", f.note);
            if f.relation == Relation::DrugClass {
                assert!(
                    f.answer.starts_with("a ") || f.answer.starts_with("an "),
                    "{}",
                    f.answer
                );
            }
        }
        for f in CONTRAINDICATIONS {
            assert!(!f.me.ends_with('.') && !f.reason.ends_with('.'), "{}", f.me);
            assert!(f.reason.starts_with(char::is_lowercase), "{}", f.reason);
        }
        for f in RED_FLAGS {
            assert!(f.why.ends_with('.'), "{}", f.why);
            assert!(!f.me.ends_with('.'), "{}", f.me);
        }
    }
}
