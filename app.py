"""PASM Studio's entry point (`streamlit run app.py`): it names the pages, so the sidebar says "Home"
rather than the file's name, and runs the one the user picked."""
import streamlit as st

PAGES = [
    ("pages/0_Home.py", "Home", ""),
    ("pages/1_Attack_explorer.py", "Attack explorer", "Attack_explorer"),
    ("pages/2_Generations.py", "Generations", "Generations"),
    ("pages/3_Data_atlas.py", "Data atlas", "Data_atlas"),
    ("pages/4_Train.py", "Train", "Train"),
    ("pages/5_Runs.py", "Runs", "Runs"),
]

st.navigation([st.Page(path, title=title, url_path=url or None, default=not url) for path, title, url in PAGES]).run()
