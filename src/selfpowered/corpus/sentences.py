"""Natural English sentences for the demo corpus, generated offline from a hand-written grammar.

Why a grammar: no text corpus is reachable without a network, public-domain books bring archaic
language and quoting copyrighted text is out. Every phrase below was written for this project
(licence: the project's MIT licence, or CC0 at your option). Each frame joins whole phrases
(a full verb phrase, a full place phrase...), so every sentence is grammatical; the lexicon is
everyday vocabulary of ~750 words, which lets a small model meet most test words in training.

`generate_sentences(n, seed)` is deterministic: the same seed gives the same list.
"""

from __future__ import annotations

import random
from collections.abc import Callable

PEOPLE = [
    "my sister",
    "my brother",
    "my neighbour",
    "our teacher",
    "the young doctor",
    "the old farmer",
    "my best friend",
    "the new manager",
    "his grandmother",
    "her uncle",
    "the bus driver",
    "the baker",
    "a tall stranger",
    "the little boy",
    "the quiet girl",
    "my cousin",
    "the shop owner",
    "our captain",
    "the nurse",
    "the mayor",
    "my father",
    "my mother",
    "the postman",
    "the librarian",
    "a young painter",
    "the night guard",
    "our landlord",
    "the chef",
    "an old sailor",
    "the twins",
    "my roommate",
    "the student",
    "the gardener",
    "the pilot",
    "the engineer",
    "the river guide",
    "a local farmer",
    "the museum guide",
    "my aunt",
    "the coach",
    "the tailor",
    "the fisherman",
    "my grandfather",
    "the new neighbour",
    "the school nurse",
    "our host",
    "the driver",
    "the singer",
    "the writer",
    "the young couple",
    "the mechanic",
    "the carpenter",
    "a kind woman",
    "an old man",
    "the clerk",
]
NAMES = [
    "Anna",
    "Peter",
    "Maria",
    "James",
    "Sofia",
    "Daniel",
    "Laura",
    "Thomas",
    "Emma",
    "Lucas",
    "Clara",
    "Henry",
    "Julia",
    "Oliver",
    "Nora",
    "Samuel",
    "Alice",
    "David",
    "Grace",
    "Martin",
    "Helen",
    "Victor",
    "Rosa",
    "Adam",
    "Lily",
    "Oscar",
    "Eva",
    "Simon",
    "Mia",
    "Jacob",
    "Ruth",
    "Leo",
    "Sarah",
    "Paul",
]
# (base form, past form) of complete verb phrases
ACTIVITIES = [
    ("bake a loaf of bread", "baked a loaf of bread"),
    ("fix the broken fence", "fixed the broken fence"),
    ("paint the kitchen door", "painted the kitchen door"),
    ("read a long novel", "read a long novel"),
    ("clean the windows", "cleaned the windows"),
    ("plant tomatoes", "planted tomatoes"),
    ("write a letter to a friend", "wrote a letter to a friend"),
    ("walk the dog", "walked the dog"),
    ("cook a large dinner", "cooked a large dinner"),
    ("wash the car", "washed the car"),
    ("buy fresh vegetables", "bought fresh vegetables"),
    ("repair the old bicycle", "repaired the old bicycle"),
    ("learn a new song", "learned a new song"),
    ("call the doctor", "called the doctor"),
    ("visit the museum", "visited the museum"),
    ("feed the chickens", "fed the chickens"),
    ("sell the old piano", "sold the old piano"),
    ("catch a small fish", "caught a small fish"),
    ("build a wooden shelf", "built a wooden shelf"),
    ("carry the heavy boxes", "carried the heavy boxes"),
    ("sweep the front steps", "swept the front steps"),
    ("sort the old photographs", "sorted the old photographs"),
    ("mend a torn jacket", "mended a torn jacket"),
    ("pick ripe apples", "picked ripe apples"),
    ("order a new lamp", "ordered a new lamp"),
    ("finish the report", "finished the report"),
    ("answer every question", "answered every question"),
    ("miss the last train", "missed the last train"),
    ("find a lost wallet", "found a lost wallet"),
    ("lose the house keys", "lost the house keys"),
    ("borrow a ladder", "borrowed a ladder"),
    ("return the library books", "returned the library books"),
    ("climb the steep hill", "climbed the steep hill"),
    ("cross the busy street", "crossed the busy street"),
    ("open a small cafe", "opened a small cafe"),
    ("close the shop early", "closed the shop early"),
    ("play the violin", "played the violin"),
    ("watch an old film", "watched an old film"),
    ("draw a map of the town", "drew a map of the town"),
    ("make a cup of tea", "made a cup of tea"),
    ("tidy the garage", "tidied the garage"),
    ("water the flowers", "watered the flowers"),
    ("pack a picnic basket", "packed a picnic basket"),
    ("count the coins", "counted the coins"),
    ("check the tyres", "checked the tyres"),
    ("fill the bucket with water", "filled the bucket with water"),
    ("light the candles", "lit the candles"),
    ("hang the washing outside", "hung the washing outside"),
    ("chop the firewood", "chopped the firewood"),
    ("wrap the birthday present", "wrapped the birthday present"),
    ("print the tickets", "printed the tickets"),
    ("pay the electricity bill", "paid the electricity bill"),
    ("teach the children to swim", "taught the children to swim"),
    ("fold the blankets", "folded the blankets"),
    ("cut the grass", "cut the grass"),
    ("prepare a warm soup", "prepared a warm soup"),
    ("collect the parcel", "collected the parcel"),
    ("move the table", "moved the table"),
    ("study for the exam", "studied for the exam"),
    ("rent a small boat", "rented a small boat"),
    ("join the choir", "joined the choir"),
    ("decorate the hall", "decorated the hall"),
    ("test the new radio", "tested the new radio"),
    ("replace the light bulb", "replaced the light bulb"),
    ("measure the room", "measured the room"),
    ("bring some cake", "brought some cake"),
    ("send a postcard", "sent a postcard"),
    ("drive to the coast", "drove to the coast"),
    ("ride a horse", "rode a horse"),
    ("take a short nap", "took a short nap"),
    ("make a list of chores", "made a list of chores"),
    ("plan a trip to the mountains", "planned a trip to the mountains"),
    ("knit a warm scarf", "knitted a warm scarf"),
    ("bake cookies for the neighbours", "baked cookies for the neighbours"),
    ("practise the piano", "practised the piano"),
    ("change the flat tyre", "changed the flat tyre"),
    ("photograph the sunset", "photographed the sunset"),
    ("grow herbs on the balcony", "grew herbs on the balcony"),
    ("fix the leaking tap", "fixed the leaking tap"),
    ("polish the silver spoons", "polished the silver spoons"),
    ("rearrange the furniture", "rearranged the furniture"),
    ("help an old friend move", "helped an old friend move"),
]
PLACES = [
    "at the market",
    "in the garden",
    "near the river",
    "at the train station",
    "in the kitchen",
    "at the library",
    "on the farm",
    "in the small village",
    "by the lake",
    "at the bakery",
    "in the park",
    "behind the school",
    "at the harbour",
    "in the old town",
    "on the beach",
    "at the post office",
    "in the city centre",
    "on the hill",
    "at the hospital",
    "in the forest",
    "at the corner shop",
    "near the bridge",
    "in the back yard",
    "at the football ground",
    "in the workshop",
    "at the museum",
    "on the second floor",
    "in the attic",
    "near the church",
    "at the bus stop",
    "in the basement",
    "at the community hall",
    "on the island",
    "at the campsite",
    "in the valley",
    "at the hotel",
]
TIMES_PAST = [
    "yesterday",
    "last night",
    "this morning",
    "last weekend",
    "on Monday",
    "on a rainy Tuesday",
    "early in the morning",
    "late in the evening",
    "two days ago",
    "last summer",
    "after lunch",
    "before breakfast",
    "during the storm",
    "at midnight",
    "on a cold winter day",
    "last month",
    "on Friday afternoon",
    "a week ago",
    "during the holidays",
    "on her birthday",
    "at dawn",
]
TIMES_FUTURE = [
    "tomorrow",
    "next week",
    "tonight",
    "on Saturday",
    "next summer",
    "after dinner",
    "this afternoon",
    "later today",
    "in the spring",
    "before the holidays",
    "next month",
    "on Sunday morning",
    "after the meeting",
    "at the weekend",
    "in a few days",
    "before noon",
]
REASONS = [
    "the bus was late",
    "it started to rain",
    "the shop was closed",
    "everyone was tired",
    "the road was blocked",
    "the weather was lovely",
    "there was no more bread",
    "the power went out",
    "the children were hungry",
    "the guests arrived early",
    "the train was cancelled",
    "the river had flooded",
    "the car would not start",
    "the tickets were sold out",
    "the wind was too strong",
    "the kettle was broken",
    "nobody had a map",
    "it was a holiday",
    "the meeting ran long",
    "the path was muddy",
    "the phone battery died",
    "the oven was too hot",
]
# (noun, adjectives, things that can be said of it)
COMMON_STATES = ["was much smaller than we expected", "belonged to my grandfather", "was easy to find"]
THINGS = [
    (
        "boat",
        ["small", "wooden", "old", "blue", "fishing"],
        [
            "needed a fresh coat of paint",
            "was tied to the pier all winter",
            "leaked a little water",
            "was sold the next day",
        ],
    ),
    (
        "house",
        ["old", "white", "empty", "large", "stone"],
        [
            "had been empty for years",
            "was painted bright yellow",
            "was locked from the inside",
            "smelled of fresh bread",
        ],
    ),
    (
        "garden",
        ["small", "quiet", "sunny", "overgrown", "tidy"],
        ["was full of roses", "was covered in snow", "needed a lot of work", "was hidden behind the trees"],
    ),
    (
        "bicycle",
        ["red", "rusty", "new", "old", "borrowed"],
        ["had a flat tyre", "needed to be repaired", "looked brand new", "was cheaper than the others"],
    ),
    (
        "kitchen",
        ["bright", "small", "warm", "crowded", "clean"],
        ["smelled of fresh bread", "was full of people", "needed a new floor", "was the warmest room in the house"],
    ),
    (
        "road",
        ["narrow", "long", "muddy", "busy", "winding"],
        ["was closed for repairs", "was covered in snow", "led down to the sea", "was full of holes"],
    ),
    (
        "window",
        ["broken", "open", "tall", "dusty", "round"],
        ["had a small crack in it", "let in the cold air", "looked out over the fields", "needed to be cleaned"],
    ),
    (
        "letter",
        ["short", "long", "handwritten", "strange", "lost"],
        ["arrived three weeks late", "had no stamp on it", "was signed by the mayor", "was hidden in a drawer"],
    ),
    (
        "bridge",
        ["old", "narrow", "stone", "wooden", "famous"],
        ["was the oldest in the town", "needed to be repaired", "was closed to cars", "was covered in snow"],
    ),
    (
        "market",
        ["busy", "weekly", "noisy", "covered", "small"],
        ["was full of people", "sold the best cheese in the region", "opened at six in the morning"],
    ),
    (
        "train",
        ["late", "crowded", "slow", "last", "early"],
        ["was full of people", "stopped at every station", "arrived an hour late", "was cancelled at the last minute"],
    ),
    (
        "coat",
        ["warm", "heavy", "green", "new", "woollen"],
        ["was too heavy to wear in spring", "had a hole in one pocket", "was cheaper than the others"],
    ),
    (
        "dog",
        ["friendly", "old", "small", "clever", "sleepy"],
        ["slept by the fire all evening", "barked at every passing car", "followed us all the way home"],
    ),
    (
        "cat",
        ["black", "lazy", "curious", "young", "grey"],
        ["slept on the windowsill all day", "caught a mouse in the barn", "would not come down from the tree"],
    ),
    (
        "lamp",
        ["bright", "old", "tall", "brass", "broken"],
        ["needed a new bulb", "made a strange noise", "stood in the corner of the room", "was too heavy to lift"],
    ),
    (
        "river",
        ["wide", "cold", "quiet", "deep", "fast"],
        ["had flooded the fields", "was too cold for swimming", "was full of fish", "froze over in January"],
    ),
    (
        "chair",
        ["wooden", "comfortable", "broken", "small", "blue"],
        ["had one short leg", "was too heavy to lift", "needed a fresh coat of paint", "was sold the next day"],
    ),
    (
        "clock",
        ["old", "loud", "large", "silver", "slow"],
        ["was ten minutes slow", "made a strange noise", "stopped at midnight", "needed to be repaired"],
    ),
]
CONDITIONS = [
    "it rains",
    "the bus is late",
    "the shop is closed",
    "the road is blocked",
    "the weather is nice",
    "the train is cancelled",
    "the car breaks down",
    "the wind is too strong",
    "the power goes out",
]
REQUESTS = [
    "close the kitchen window",
    "turn off the lights",
    "feed the cat",
    "lock the front door",
    "water the plants",
    "call your mother",
    "take out the rubbish",
    "bring an umbrella",
    "buy some milk",
    "check the post",
    "put the kettle on",
    "write down the address",
    "charge your phone",
    "return the keys",
    "pack a warm jumper",
    "wash your hands",
    "clear the table",
    "leave the gate open",
    "tell the others",
    "save a seat for me",
]
EVENTS = [
    "the storm arrives",
    "the guests come",
    "we leave for the station",
    "the shop closes",
    "it gets dark",
    "the film starts",
    "your father gets home",
    "the bus comes",
    "you go to bed",
    "the rain starts",
    "the meeting begins",
    "the children wake up",
    "the train leaves",
]
FOODS = [
    "soup",
    "fresh bread",
    "apple pie",
    "rice",
    "tea",
    "coffee",
    "lemon cake",
    "roasted potatoes",
    "tomato salad",
    "hot chocolate",
    "pancakes",
    "grilled fish",
    "vegetable stew",
    "cheese",
]
FOOD_CONDITIONS = [
    "it is made at home",
    "you add a little salt",
    "it is served warm",
    "you share it with friends",
    "it is eaten outside",
    "the ingredients are fresh",
    "you cook it slowly",
    "it is cold outside",
]
WEATHER = [
    "it rained all afternoon",
    "the wind blew hard all night",
    "the sun came out after lunch",
    "it snowed for three days",
    "a thick fog covered the valley",
    "the morning was cold and clear",
    "a storm passed over the town",
    "the evening was warm and still",
]
CONSEQUENCES = [
    "we stayed inside and played cards",
    "the match was put off until Sunday",
    "the streets were empty",
    "everyone went to the beach",
    "the roads were closed",
    "we lit a fire in the living room",
    "the farmers were pleased",
    "the trains were delayed",
    "the children built a snowman",
    "we had dinner in the garden",
    "the school closed early",
    "nobody went to the market",
]
FEELINGS = ["happy", "surprised", "tired", "worried", "proud", "relieved", "nervous", "excited", "calm"]
NEWS = [
    "the bakery will open a second shop",
    "the old bridge will be repaired next year",
    "the library is looking for volunteers",
    "the concert was moved to the town hall",
    "the new bus route starts in May",
    "the school will plant a hundred trees",
    "the museum will be free on Sundays",
    "the market will stay open later in summer",
    "the swimming pool is closed for repairs",
    "the village won a prize for its gardens",
]


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _person(rng: random.Random) -> str:
    return rng.choice(NAMES) if rng.random() < 0.35 else rng.choice(PEOPLE)


def _thing_and_state(rng: random.Random) -> tuple[str, str]:
    noun, adjectives, states = rng.choice(THINGS)
    return f"{rng.choice(adjectives)} {noun}", rng.choice(states + COMMON_STATES)


def _with_place(rng: random.Random) -> tuple[str, str, str]:
    thing, state = _thing_and_state(rng)
    return thing, rng.choice(PLACES), state


def _mentioned(rng: random.Random) -> tuple[str, str, str, str, str]:
    thing, state = _thing_and_state(rng)
    verb = rng.choice(["saw", "mentioned", "talked about", "noticed", "described"])
    return thing, _person(rng), verb, rng.choice(TIMES_PAST), state


# Each frame draws one sentence; together they give questions, requests, statements and reports.
FRAMES: list[Callable[[random.Random], str]] = [
    lambda r: f"{_cap(_person(r))} {r.choice(ACTIVITIES)[1]} {r.choice(PLACES)} {r.choice(TIMES_PAST)}.",
    lambda r: f"{_cap(r.choice(TIMES_PAST))}, {_person(r)} {r.choice(ACTIVITIES)[1]} because {r.choice(REASONS)}.",
    lambda r: f"Do you think {_person(r)} will {r.choice(ACTIVITIES)[0]} {r.choice(TIMES_FUTURE)}?",
    lambda r: "The {} {} {}.".format(*_with_place(r)),
    lambda r: f"Please {r.choice(REQUESTS)} before {r.choice(EVENTS)}.",
    lambda r: f"{_cap(_person(r))} said that {r.choice(NEWS)}.",
    lambda r: f"{_cap(r.choice(FOODS))} always tastes better when {r.choice(FOOD_CONDITIONS)}.",
    lambda r: f"{_cap(r.choice(WEATHER))}, so {r.choice(CONSEQUENCES)}.",
    lambda r: f"{_cap(_person(r))} was {r.choice(FEELINGS)} when {_person(r)} {r.choice(ACTIVITIES)[1]}.",
    lambda r: f"We are going to {r.choice(ACTIVITIES)[0]} {r.choice(PLACES)} {r.choice(TIMES_FUTURE)}.",
    lambda r: f"Why did {_person(r)} {r.choice(ACTIVITIES)[0]} {r.choice(PLACES)} {r.choice(TIMES_PAST)}?",
    lambda r: f"I heard that {r.choice(NEWS)}, and {_person(r)} is {r.choice(FEELINGS)} about it.",
    lambda r: f"After {_person(r)} {r.choice(ACTIVITIES)[1]}, we {r.choice(ACTIVITIES)[1]} together.",
    lambda r: (
        f"If {r.choice(CONDITIONS)} {r.choice(TIMES_FUTURE)}, {_person(r)} will {r.choice(ACTIVITIES)[0]} instead."
    ),
    lambda r: f"Could you {r.choice(REQUESTS)} when {r.choice(EVENTS)}?",
    lambda r: "The {} that {} {} {} {}.".format(*_mentioned(r)),
]

MIN_WORDS, MAX_WORDS = 6, 25


def generate_sentences(count: int, seed: int = 0) -> list[str]:
    """`count` distinct sentences of 6-25 words, deterministic for a seed."""
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    attempts = 0
    while len(seen) < count:
        attempts += 1
        if attempts > count * 50:
            raise RuntimeError(f"the grammar ran out of distinct sentences after {len(seen)} of {count}")
        sentence = rng.choice(FRAMES)(rng)
        if MIN_WORDS <= len(sentence.split()) <= MAX_WORDS:
            seen.setdefault(sentence)
    return list(seen)
