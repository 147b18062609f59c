"""PASM Studio's entry point (`streamlit run app.py`): it names the pages, so the sidebar says "Home"
rather than the file's name, and runs the one the user picked."""
import streamlit as st

# (file, title in the sidebar, URL path, icon). Icons are Material Symbols, which streamlit ships as a font:
# emoji would be empty boxes on machines without an emoji font. A page's own st.title says the same as its title here.
PAGES = [
    ("pages/0_Home.py", "Home", "", ":material/home:"),
    ("pages/1_Attack_explorer.py", "Attack explorer", "Attack_explorer", ":material/ads_click:"),
    ("pages/2_Generations.py", "Generations", "Generations", ":material/account_tree:"),
    ("pages/3_Data_atlas.py", "Data set atlas", "Data_atlas", ":material/map:"),
    ("pages/4_Train.py", "Train", "Train", ":material/model_training:"),
    ("pages/5_Runs.py", "Runs", "Runs", ":material/folder_open:"),
]

st.navigation([st.Page(path, title=title, url_path=url or None, default=not url, icon=icon)
               for path, title, url, icon in PAGES]).run()
