"""A picture of a lab: its topology (what the picture shows, from the desired state and, when
asked, the live one) and that topology written in DOT or Mermaid. Pure: no kernel, no process."""
