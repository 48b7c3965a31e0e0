#!/usr/bin/env python3
"""Write the accuracy gate's corpus: sentences, passages and queries of our own.

The gate (docs/embeddings.md, "A faster model that keeps its answers")
compares a model variant with its fp32 reference on text the project wrote
itself, beside the tests' 16 hand-picked sentences: every sentence's cosine
must be >= 0.995, and a small retrieval task (queries against a few thousand
passages) must keep >= 0.95 of its top-10 results.

The text is generated from a fixed seed by a small grammar over a dozen
topics (weather, cooking, sport, markets, travel, software, health, science,
history, music, gardening, transport), with names, numbers, dates, product
codes, punctuation and some French, German, Spanish and Italian, so that it
has the variety of real input without being copied from anywhere. Running
it again writes the same files byte for byte.

    python3 scripts/make_gate_corpus.py            # writes kernel/embed/tests/data/gate/
"""

from __future__ import annotations

import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "kernel" / "embed" / "tests" / "data" / "gate"

NAMES = ["Ada", "Bruno", "Chiara", "Dmitri", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kemal",
         "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tomas", "Uma", "Viktor",
         "Wanda", "Xavier", "Yara", "Zofia"]
PLACES = ["Lisbon", "Oslo", "the old harbour", "the mountain village", "Kyoto", "the city library",
          "the night market", "Marseille", "the river delta", "the university campus", "Nairobi",
          "the train station", "a small bakery", "the research station", "Montreal", "the stadium"]
TIMES = ["on Monday morning", "last winter", "in 1987", "before sunrise", "after the storm",
         "during the holidays", "every Thursday", "at half past nine", "in early spring",
         "two weeks ago", "late at night", "on 14 March 2021"]

TOPICS = {
    "weather": {
        "subjects": ["the forecast", "a cold front", "the morning fog", "heavy rain", "the heatwave",
                     "a sudden hailstorm", "the wind from the north"],
        "verbs": ["reached", "covered", "surprised", "delayed", "flooded", "cooled"],
        "objects": ["the coastal roads", "the whole valley", "the farmers", "the outdoor concert",
                    "the airport", "the afternoon match"],
        "details": ["temperatures fell to {n} degrees", "{n} millimetres of rain were measured",
                    "gusts of {n} km/h were recorded", "the humidity stayed above {n} percent"],
    },
    "cooking": {
        "subjects": ["the chef", "my grandmother", "the new recipe", "a slow-cooked stew",
                     "the sourdough starter", "the pastry team"],
        "verbs": ["simmered", "baked", "seasoned", "reduced", "roasted", "whisked"],
        "objects": ["the tomato sauce", "a loaf of rye bread", "the lentil soup", "fresh pasta",
                    "the almond cake", "a pan of vegetables"],
        "details": ["it needs {n} grams of flour", "bake it for {n} minutes", "add {n} cloves of garlic",
                    "let it rest for {n} hours"],
    },
    "sport": {
        "subjects": ["the young striker", "the home team", "the veteran goalkeeper", "the relay squad",
                     "the tennis champion", "the cycling team"],
        "verbs": ["won", "lost", "scored in", "dominated", "qualified for", "withdrew from"],
        "objects": ["the final match", "the regional cup", "the semi-final", "the marathon",
                    "the season opener", "the world championship"],
        "details": ["the score was {n} to {m}", "{n} thousand fans watched", "it was their {n}th win in a row",
                    "the race took {n} minutes"],
    },
    "markets": {
        "subjects": ["the central bank", "investors", "the stock index", "oil prices", "the euro",
                     "a technology company"],
        "verbs": ["raised", "cut", "worried about", "rallied after", "fell on", "reported"],
        "objects": ["interest rates", "quarterly earnings", "the inflation figures", "the trade deficit",
                    "the bond market", "consumer spending"],
        "details": ["shares moved {n} percent", "the rate now stands at {n}.{m} percent",
                    "revenue grew to {n} million", "analysts expected {n} billion"],
    },
    "travel": {
        "subjects": ["the night train", "our flight", "the ferry", "a group of hikers", "the tour guide",
                     "the coach to the coast"],
        "verbs": ["departed for", "arrived in", "was diverted to", "explored", "crossed", "returned from"],
        "objects": ["the northern islands", "the capital", "the desert canyon", "the glacier",
                    "the wine region", "the border town"],
        "details": ["the journey took {n} hours", "tickets cost {n} euros", "platform {n} was closed",
                    "we walked {n} kilometres"],
    },
    "software": {
        "subjects": ["the scheduler", "a background worker", "the database migration", "the new release",
                     "the build server", "the embedding service"],
        "verbs": ["crashed during", "completed", "slowed down", "retried", "rejected", "timed out on"],
        "objects": ["the nightly backup", "every request", "the deployment", "the batch job",
                    "the cache refresh", "the health check"],
        "details": ["latency rose to {n} ms", "error code E{n}{m} was logged", "{n} requests were queued",
                    "version {n}.{m} fixes it"],
    },
    "health": {
        "subjects": ["the nurse", "the clinic", "a new study", "the vaccine campaign", "the doctor",
                     "the physiotherapist"],
        "verbs": ["recommended", "examined", "treated", "reduced", "monitored", "prescribed"],
        "objects": ["the patients' blood pressure", "a sprained ankle", "seasonal flu",
                    "the risk of infection", "the children in the ward", "a daily walk"],
        "details": ["{n} patients took part", "take {n} tablets a day", "the trial lasted {n} weeks",
                    "recovery took {n} days"],
    },
    "science": {
        "subjects": ["the telescope", "the chemists", "a team of biologists", "the physicist",
                     "the satellite", "the geologists"],
        "verbs": ["observed", "measured", "discovered", "mapped", "sequenced", "simulated"],
        "objects": ["a distant galaxy", "the reaction rate", "a new species of beetle", "the ocean floor",
                    "the genome of a fern", "the melting of the ice sheet"],
        "details": ["the sample was {n} million years old", "the error was below {n} percent",
                    "they used {n} sensors", "the orbit takes {n} days"],
    },
    "history": {
        "subjects": ["the empire", "the old treaty", "a medieval monastery", "the revolution",
                     "the merchants", "the first printing press"],
        "verbs": ["shaped", "ended", "preserved", "transformed", "financed", "divided"],
        "objects": ["the trade routes", "the northern provinces", "rare manuscripts", "the city walls",
                    "the royal court", "the spread of ideas"],
        "details": ["it lasted {n} years", "the archive holds {n} letters", "it was signed in {y}",
                    "{n} ships sailed that year"],
    },
    "music": {
        "subjects": ["the orchestra", "a jazz quartet", "the young pianist", "the choir", "the band",
                     "the composer"],
        "verbs": ["performed", "recorded", "rehearsed", "improvised on", "premiered", "toured with"],
        "objects": ["a new symphony", "their second album", "an old folk song", "the opening theme",
                    "a string concerto", "the festival programme"],
        "details": ["the concert lasted {n} minutes", "{n} musicians were on stage",
                    "the album sold {n} thousand copies", "the hall seats {n} people"],
    },
    "gardening": {
        "subjects": ["the gardener", "our neighbours", "the community garden", "the rose bushes",
                     "the apple trees", "the greenhouse"],
        "verbs": ["planted", "pruned", "watered", "harvested", "protected", "fertilised"],
        "objects": ["the vegetable beds", "young tomato plants", "the hedges", "a row of tulips",
                    "the herb garden", "the compost heap"],
        "details": ["they planted {n} seedlings", "water them every {n} days", "the harvest weighed {n} kilograms",
                    "the beds are {n} metres long"],
    },
    "transport": {
        "subjects": ["the city council", "the tram line", "the bus drivers", "the new bridge",
                     "electric scooters", "the port authority"],
        "verbs": ["opened", "extended", "paused", "replaced", "banned", "expanded"],
        "objects": ["the ring road", "the night service", "the cycle lanes", "the old ferry",
                    "parking in the centre", "the freight terminal"],
        "details": ["it carries {n} thousand passengers a day", "the works cost {n} million",
                    "trains run every {n} minutes", "the line is {n} kilometres long"],
    },
}

FOREIGN = [
    "Le train de nuit part à {h} heures depuis la gare centrale.",
    "Die Bibliothek bleibt am Sonntag bis {h} Uhr geöffnet.",
    "El mercado abre a las {h} y cierra al mediodía.",
    "Il concerto è stato rinviato a causa della pioggia.",
    "Nous avons planté {n} arbres fruitiers dans le jardin.",
    "Der Zug nach Hamburg hat {n} Minuten Verspätung.",
    "La receta necesita {n} huevos y un poco de azúcar.",
    "Abbiamo camminato per {n} chilometri lungo il fiume.",
]

TEMPLATES = [
    "{Subject} {verb} {object} {time}.",
    "{Subject} {verb} {object} in {place}.",
    "According to {name}, {subject} {verb} {object} {time}.",
    "{Name} said that {subject} {verb} {object}; {detail}.",
    "In {place}, {subject} {verb} {object} and {detail}.",
    "{Detail} after {subject} {verb} {object}.",
    "Why {verb_q} {subject} {verb_base} {object} {time}?",
    "{Name} wrote: \"{Subject} {verb} {object}.\"",
    "{Subject} {verb} {object} — {detail}, {name} noted.",
    "{Time_cap}, {subject} {verb} {object} in {place}.",
    "Report #{n}{m}: {subject} {verb} {object} ({detail}).",
    "{Subject} {verb} {object}, although {detail}.",
]

BASE = {"reached": "reach", "covered": "cover", "surprised": "surprise", "delayed": "delay",
        "flooded": "flood", "cooled": "cool"}


def fill(rng: random.Random, topic: dict, name: str | None = None) -> str:
    template = rng.choice(TEMPLATES)
    n, m = rng.randint(2, 98), rng.randint(1, 9)
    name = name or rng.choice(NAMES)
    subject = rng.choice(topic["subjects"])
    verb = rng.choice(topic["verbs"])
    detail = rng.choice(topic["details"]).format(n=n, m=m, y=rng.randint(1450, 1950))
    time = rng.choice(TIMES)
    values = {
        "subject": subject, "Subject": subject[0].upper() + subject[1:], "verb": verb,
        "verb_q": "did", "verb_base": BASE.get(verb, verb.split()[0].rstrip("ed") or verb),
        "object": rng.choice(topic["objects"]), "place": rng.choice(PLACES), "time": time,
        "Time_cap": time[0].upper() + time[1:], "name": name, "Name": name, "detail": detail,
        "Detail": detail[0].upper() + detail[1:], "n": n, "m": m,
    }
    return template.format(**values)


def foreign(rng: random.Random) -> str:
    return rng.choice(FOREIGN).format(h=rng.randint(6, 22), n=rng.randint(2, 40))


def main() -> None:
    rng = random.Random(20261201)
    topics = list(TOPICS)
    OUT.mkdir(parents=True, exist_ok=True)

    sentences = []
    for index in range(1200):
        if index % 25 == 0:
            sentences.append(foreign(rng))
        elif index % 40 == 7:
            # Short and odd inputs: single words, codes, numbers.
            sentences.append(rng.choice(["OK", "Thanks!", "404", "A-17/B", "e.g.", "N/A", "yes",
                                         "Why?", "v2.3.1", "+44 20 7946 0958", "100%", "café"]))
        else:
            sentences.append(fill(rng, TOPICS[rng.choice(topics)]))

    passages = []
    for index in range(3000):
        topic_name = topics[index % len(topics)]
        topic = TOPICS[topic_name]
        name = rng.choice(NAMES)
        count = rng.randint(2, 4)
        parts = [fill(rng, topic, name) for _ in range(count)]
        if rng.random() < 0.05:
            parts.append(foreign(rng))
        passages.append(" ".join(parts))

    queries = []
    for _ in range(200):
        topic = TOPICS[rng.choice(topics)]
        form = rng.randint(0, 3)
        subject = rng.choice(topic["subjects"])
        obj = rng.choice(topic["objects"])
        if form == 0:
            queries.append(f"What happened when {subject} {rng.choice(topic['verbs'])} {obj}?")
        elif form == 1:
            queries.append(f"{rng.choice(NAMES)} and {subject} in {rng.choice(PLACES)}")
        elif form == 2:
            queries.append(f"news about {obj} {rng.choice(TIMES)}")
        else:
            queries.append(rng.choice(topic["details"]).format(n=rng.randint(2, 98), m=rng.randint(1, 9),
                                                               y=rng.randint(1450, 1950)))

    for name, rows in (("sentences.txt", sentences), ("passages.txt", passages), ("queries.txt", queries)):
        (OUT / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    print(f"make_gate_corpus: {len(sentences)} sentences, {len(passages)} passages, {len(queries)} queries -> {OUT}")


if __name__ == "__main__":
    main()
