"""The built-in SFT set ``sft_geography``: knowledge recall, world geography questions with short
worked answers (LIMO schema): capitals (asked both ways), continents of countries and rivers, and
the countries of famous landmarks.

A candidate of a different character than the numeric SFT sets: nothing is computed, a fact is
recalled and stated. Its questions are shorter than ``sft_math``'s (about a dozen words), so the
same ``sts.sft_tokens`` budget reads fewer of its tokens; every fact is used (forward and, for
capitals, reverse), and the order is a seeded shuffle."""

from __future__ import annotations

import random

# (country, capital, continent); continents named Africa, Asia, Europe, North America, South
# America, Oceania
_COUNTRIES = (
    ("Kenya", "Nairobi", "Africa"), ("Egypt", "Cairo", "Africa"),
    ("Nigeria", "Abuja", "Africa"), ("Ghana", "Accra", "Africa"),
    ("Ethiopia", "Addis Ababa", "Africa"), ("Morocco", "Rabat", "Africa"),
    ("Senegal", "Dakar", "Africa"), ("Uganda", "Kampala", "Africa"),
    ("Zambia", "Lusaka", "Africa"), ("Zimbabwe", "Harare", "Africa"),
    ("Algeria", "Algiers", "Africa"), ("Tunisia", "Tunis", "Africa"),
    ("Mali", "Bamako", "Africa"), ("Angola", "Luanda", "Africa"),
    ("Rwanda", "Kigali", "Africa"), ("Madagascar", "Antananarivo", "Africa"),
    ("Japan", "Tokyo", "Asia"), ("China", "Beijing", "Asia"), ("India", "New Delhi", "Asia"),
    ("Thailand", "Bangkok", "Asia"), ("Vietnam", "Hanoi", "Asia"),
    ("Indonesia", "Jakarta", "Asia"), ("Philippines", "Manila", "Asia"),
    ("South Korea", "Seoul", "Asia"), ("Mongolia", "Ulaanbaatar", "Asia"),
    ("Nepal", "Kathmandu", "Asia"), ("Bangladesh", "Dhaka", "Asia"),
    ("Iran", "Tehran", "Asia"), ("Iraq", "Baghdad", "Asia"),
    ("Saudi Arabia", "Riyadh", "Asia"), ("Jordan", "Amman", "Asia"),
    ("Afghanistan", "Kabul", "Asia"), ("Malaysia", "Kuala Lumpur", "Asia"),
    ("Uzbekistan", "Tashkent", "Asia"),
    ("France", "Paris", "Europe"), ("Germany", "Berlin", "Europe"),
    ("Italy", "Rome", "Europe"), ("Spain", "Madrid", "Europe"),
    ("Portugal", "Lisbon", "Europe"), ("Poland", "Warsaw", "Europe"),
    ("Sweden", "Stockholm", "Europe"), ("Norway", "Oslo", "Europe"),
    ("Finland", "Helsinki", "Europe"), ("Denmark", "Copenhagen", "Europe"),
    ("Greece", "Athens", "Europe"), ("Austria", "Vienna", "Europe"),
    ("Hungary", "Budapest", "Europe"), ("Ireland", "Dublin", "Europe"),
    ("the Netherlands", "Amsterdam", "Europe"), ("Belgium", "Brussels", "Europe"),
    ("the Czech Republic", "Prague", "Europe"), ("Romania", "Bucharest", "Europe"),
    ("Ukraine", "Kyiv", "Europe"), ("Iceland", "Reykjavik", "Europe"),
    ("Canada", "Ottawa", "North America"), ("Mexico", "Mexico City", "North America"),
    ("Cuba", "Havana", "North America"), ("Jamaica", "Kingston", "North America"),
    ("Guatemala", "Guatemala City", "North America"),
    ("Panama", "Panama City", "North America"),
    ("Brazil", "Brasília", "South America"), ("Argentina", "Buenos Aires", "South America"),
    ("Peru", "Lima", "South America"), ("Chile", "Santiago", "South America"),
    ("Colombia", "Bogotá", "South America"), ("Venezuela", "Caracas", "South America"),
    ("Ecuador", "Quito", "South America"), ("Uruguay", "Montevideo", "South America"),
    ("Paraguay", "Asunción", "South America"),
    ("Australia", "Canberra", "Oceania"), ("New Zealand", "Wellington", "Oceania"),
    ("Fiji", "Suva", "Oceania"), ("Papua New Guinea", "Port Moresby", "Oceania"),
)

# (river, continent it flows through)
_RIVERS = (
    ("Nile", "Africa"), ("Congo", "Africa"), ("Niger", "Africa"), ("Zambezi", "Africa"),
    ("Amazon", "South America"), ("Orinoco", "South America"), ("Paraná", "South America"),
    ("Danube", "Europe"), ("Rhine", "Europe"), ("Volga", "Europe"), ("Thames", "Europe"),
    ("Loire", "Europe"), ("Yangtze", "Asia"), ("Ganges", "Asia"), ("Mekong", "Asia"),
    ("Indus", "Asia"), ("Mississippi", "North America"), ("Yukon", "North America"),
    ("Murray", "Oceania"),
)

# (landmark, country, what it is)
_LANDMARKS = (
    ("the Eiffel Tower", "France", "an iron lattice tower in Paris"),
    ("the Colosseum", "Italy", "an ancient Roman amphitheatre in Rome"),
    ("Machu Picchu", "Peru", "a fifteenth-century Inca citadel in the Andes"),
    ("the Taj Mahal", "India", "a white marble mausoleum in Agra"),
    ("Petra", "Jordan", "an ancient city carved into rose-coloured rock"),
    ("Angkor Wat", "Cambodia", "a vast temple complex near Siem Reap"),
    ("Chichen Itza", "Mexico", "a Maya city on the Yucatán Peninsula"),
    ("the Acropolis", "Greece", "the ancient citadel above Athens"),
    ("the Alhambra", "Spain", "a palace and fortress in Granada"),
    ("the Sydney Opera House", "Australia", "a performing arts centre in Sydney"),
    ("the Statue of Liberty", "the United States", "a copper statue in New York Harbor"),
    ("the Great Pyramid of Giza", "Egypt", "the largest pyramid at Giza, near Cairo"),
    ("Stonehenge", "the United Kingdom", "a prehistoric stone circle in England"),
    ("Mount Fuji", "Japan", "a volcano and the highest mountain of the country"),
    ("the Hagia Sophia", "Turkey", "a great domed building in Istanbul"),
    ("Borobudur", "Indonesia", "a Buddhist temple on the island of Java"),
    ("Christ the Redeemer", "Brazil", "a statue above Rio de Janeiro"),
    ("the Forbidden City", "China", "the former imperial palace in Beijing"),
    ("Neuschwanstein Castle", "Germany", "a nineteenth-century castle in Bavaria"),
    ("Table Mountain", "South Africa", "a flat-topped mountain above Cape Town"),
    ("the Kremlin", "Russia", "a fortified complex in the centre of Moscow"),
    ("Uluru", "Australia", "a large sandstone rock in the Northern Territory"),
    ("Mount Kilimanjaro", "Tanzania", "the highest mountain in Africa"),
    ("the Parthenon", "Greece", "a temple on the Acropolis of Athens"),
)


def _geography_pool() -> list[tuple[str, str, str]]:
    """(question, solution body, answer) for every fact, in a fixed order."""
    out = []
    for country, capital, continent in _COUNTRIES:
        name = country[:1].upper() + country[1:]
        out.append((f"What is the capital city of {country}?",
                    f"{capital} is the capital city of {country}.", capital))
        out.append((f"Which country has {capital} as its capital?",
                    f"{capital} is the capital of {country}, so the country is {country}.",
                    name))
        out.append((f"On which continent is {country}?",
                    f"{name} lies in {continent}; its capital is {capital}.", continent))
    for river, continent in _RIVERS:
        out.append((f"On which continent does the {river} river flow?",
                    f"The {river} flows through {continent}.", continent))
    for landmark, country, what in _LANDMARKS:
        place = landmark[:1].upper() + landmark[1:]
        out.append((f"In which country can you visit {landmark}?",
                    f"{place} is {what}, in {country}.", country[:1].upper() + country[1:]))
    return out


def sft_geography(n: int | None = None, seed: int = 0) -> list[dict]:
    """``n`` distinct geography recall questions (all of them when None) with short worked
    answers, in the LIMO schema, in an order shuffled with ``seed``."""
    pool = _geography_pool()
    if n is not None and not 1 <= n <= len(pool):
        raise ValueError(f"sft_geography has {len(pool)} questions; asked for {n}")
    random.Random(f"stsflow-sft-geography:{seed}").shuffle(pool)
    return [{"id": f"geography-{i + 1:04d}", "question": q,
             "solution": f"Step 1: {body}\nThe answer is {answer}.", "answer": answer}
            for i, (q, body, answer) in enumerate(pool[:n])]
