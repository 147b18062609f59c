"""PASM Studio's entry point (`streamlit run app.py`): it names the pages, so the sidebar says "Home"
rather than the file's name, and runs the one the user picked."""
from pathlib import Path

import streamlit as st

# The pages live in app_pages/, not pages/: streamlit takes a pages/ folder beside the entry point for an old-style page
# list, so a deep link (say /Train) opened first after a start would run that page without this navigation.
# (file, title in the sidebar, URL path, icon). Icons are Material Symbols, a font streamlit ships and serves itself:
# emoji would be empty boxes on machines without an emoji font. A page's own st.title says the same as its title here.
PAGES = [
    ("app_pages/0_Home.py", "Home", "", ":material/home:"),
    ("app_pages/1_Attack_explorer.py", "Attack explorer", "Attack_explorer", ":material/ads_click:"),
    ("app_pages/2_Generations.py", "Generations", "Generations", ":material/account_tree:"),
    ("app_pages/3_Data_atlas.py", "Data set atlas", "Data_atlas", ":material/map:"),
    ("app_pages/4_Train.py", "Train", "Train", ":material/model_training:"),
    ("app_pages/5_Runs.py", "Runs", "Runs", ":material/folder_open:"),
]
# The browser tab's icon, for every page, set before the navigation: without one, the browser fetches the page's
# Material icon as a picture from Google's font server, which an offline machine cannot reach. An SVG file is sent
# inline (a data: URL).
FAVICON = Path(__file__).resolve().parent / "ui" / "favicon.svg"

st.set_page_config(page_icon=FAVICON, layout="wide")
st.navigation([st.Page(path, title=title, url_path=url or None, default=not url, icon=icon)
               for path, title, url, icon in PAGES]).run()
