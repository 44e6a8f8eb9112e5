import json
import os

from dotenv import load_dotenv
from websocket import WebSocketApp

load_dotenv()

URL = os.environ["OPENREALTIME_URL"]


def on_open(ws: WebSocketApp) -> None:
    print("Connected to Realtime API.")

    ws.send(
        json.dumps(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "model": "gpt-realtime",
                    "output_modalities": ["text"],
                    "instructions": (
                        "You are a concise Python assistant. "
                        "Answer in short paragraphs and end with one practical next step."
                    ),
                },
            }
        )
    )

    ws.send(
        json.dumps(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {
                            "type": "input_text",
                            "text": (
                                "Explain when a Python backend should use WebSocket "
                                "instead of WebRTC for the OpenAI Realtime API."
                            ),
                        }
                    ],
                },
            }
        )
    )

    ws.send(
        json.dumps(
            {
                "type": "response.create",
                "response": {
                    "output_modalities": ["text"],
                },
            }
        )
    )


def on_message(ws: WebSocketApp, message: str) -> None:
    event = json.loads(message)
    event_type = event.get("type")

    if event_type == "response.output_text.delta":
        print(event["delta"], end="", flush=True)
    elif event_type == "response.done":
        print("\n\nResponse complete.")
        ws.close()
    elif event_type == "error":
        print("\nRealtime error:", event)


def on_error(ws: WebSocketApp, error: Exception) -> None:
    print("WebSocket error:", error)


def on_close(ws: WebSocketApp, close_status_code, close_msg) -> None:
    print(f"Socket closed: {close_status_code} {close_msg}")


ws = WebSocketApp(
    URL,
    header=[f"Authorization: Bearer {os.environ['OPENAI_API_KEY']}"],
    on_open=on_open,
    on_message=on_message,
    on_error=on_error,
    on_close=on_close,
)

ws.run_forever()
