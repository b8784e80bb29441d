"""Writes hypnos's own GSM-Infinite distractor lists (docs/tasks.md 3.4): <template>_{tops,items}.txt.

Each subcategory combines one naming pattern with a list of invented or generic roots, so the
names are ours, ASCII, and disjoint from the core names. Run from this folder; the output is
committed, the generator only reads the .txt files.
"""

AMBER = ("Amber Birch Copper Dusk Ember Fern Granite Hazel Ivory Juniper Kestrel Linden Marble "
         "Nettle Onyx Poplar Quartz Rowan Sable Thistle").split()
TOWNS = ("Aldwick Bramford Caldmoor Dunhollow Elmstead Foxmere Greywater Harlow Ironbridge "
         "Kingsreach Larchmont Millbrook Northcott Oldcastle Pembury Redhaven Stonegate Thornbury "
         "Westmoor Yarrowby").split()
MARS = ("Ares Olympus Tharsis Hellas Elysium Utopia Arcadia Noachis Syrtis Valles Argyre Chryse "
        "Isidis Amazonis Cydonia Meridiani Gale Jezero Acidalia Promethei").split()
PEOPLE = ("Abbott Barlow Carver Dalton Ellison Fletcher Garrison Holloway Ingram Jennings Kendrick "
          "Lawson Mercer Norwood Ogden Prescott Quincy Rutherford Sheldon Tolliver").split()
COLOURS = ("Crimson Azure Saffron Silverleaf Emerald Scarlet Violet Indigo Cobalt Heather Ochre "
           "Teal Coral Jade Russet Umber Cerulean Magenta Topaz Obsidian").split()
ROOTS = [AMBER, TOWNS, MARS, PEOPLE, COLOURS]

ANIMAL_MODS = ("spotted striped golden silver crested dwarf giant northern southern eastern "
               "western mountain desert marsh coastal royal common banded pale dusky").split()
ANIMALS = ("angelfish lizard frog beetle heron tortoise lemur gecko salamander finch otter hare "
           "moth snake antelope seal").split()
SCHOOL_MODS = ("public private regional national municipal community international evening rural "
               "coastal").split()
SCHOOLS = ["art school", "music academy", "law school", "nursing school", "dance academy",
           "language institute", "engineering college", "business school", "astronomy institute",
           "design college", "cooking academy", "veterinary school", "aviation academy",
           "film school", "forestry college", "maritime academy"]
MOODS = ("gritty whimsical somber lighthearted haunting breezy tense quirky melancholy rousing "
         "dreamy brooding cheerful bleak playful moody tender chilling zany epic").split()
GENRES = ["war drama", "space opera", "courtroom drama", "heist film", "musical", "western",
          "romance", "horror film", "animated feature", "documentary", "spy thriller",
          "sports drama", "monster movie", "family comedy", "noir mystery", "disaster film"]

# (subcategory, suffix) for tops; the roots cycle through ROOTS.
TOPS = {
    "zoo": [("Lakes", "Lake"), ("Woods", "Woods"), ("Craters", "Crater"), ("Museums", "Museum"),
            ("Harbors", "Harbor"), ("Canyons", "Canyon"), ("Isles", "Isle"), ("Parks", "Park"),
            ("Peaks", "Peak"), ("Hollows", "Hollow"), ("Bays", "Bay"),
            ("Sanctuaries", "Sanctuary"), ("Meadows", "Meadow"), ("Marshes", "Marsh"),
            ("Springs", "Springs"), ("Reserves", "Reserve")],
    "teachers": [("Cities", "City"), ("Towns", "Town"), ("Heights", "Heights"),
                 ("Falls", "Falls"), ("Junctions", "Junction"), ("Crossings", "Crossing"),
                 ("Ports", "Port"), ("Ridges", "Ridge"), ("Boroughs", "Borough"),
                 ("Villages", "Village"), ("Landings", "Landing"), ("Points", "Point"),
                 ("Groves", "Grove"), ("Fields", "Fields"), ("Havens", "Haven"),
                 ("Mills", "Mills")],
    "movies": [("Film festivals", "Film Festival"), ("Film awards", "Film Awards"),
               ("Screen awards", "Screen Awards"), ("Cinema weeks", "Cinema Week"),
               ("Film galas", "Film Gala"), ("Picture shows", "Picture Show"),
               ("Film fairs", "Film Fair"), ("Reel awards", "Reel Awards"),
               ("Cinema days", "Cinema Days"), ("Film forums", "Film Forum"),
               ("Movie nights", "Movie Night"), ("Film summits", "Film Summit"),
               ("Screen festivals", "Screen Festival"), ("Film weekends", "Film Weekend"),
               ("Cinema prizes", "Cinema Prize"), ("Documentary days", "Documentary Days")],
}


def items(template):
    if template == "zoo":
        return [(a, [f"adult {m} {a}" for m in ANIMAL_MODS]) for a in ANIMALS]
    if template == "teachers":
        return [(s, [f"{m} {s}" for m in SCHOOL_MODS]) for s in SCHOOLS]
    return [(g, [f"{m} {g}" for m in MOODS]) for g in GENRES]


def write(path, groups):
    with open(path, "w", encoding="ascii") as f:
        for k, (name, names) in enumerate(groups):
            f.write(("\n" if k else "") + f"# {name}\n")
            f.writelines(n + "\n" for n in names)


for template, tops in TOPS.items():
    write(f"{template}_tops.txt",
          [(sub, [f"{r} {suffix}" for r in ROOTS[i % len(ROOTS)]])
           for i, (sub, suffix) in enumerate(tops)])
    write(f"{template}_items.txt", items(template))
