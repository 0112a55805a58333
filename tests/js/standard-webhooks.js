// Verifies one webhook with the Standard Webhooks reference library (npm `standardwebhooks`), as a
// receiver would, with the key given the way the README tells: "whsec_" + base64(WebhookSecret).
// Reads {"secret", "headers", "body"} as JSON on stdin; prints "verified" or "refused: <reason>".
// Driven by tests/tests/webhooks.rs.
const { Webhook } = require("standardwebhooks");

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const { secret, headers, body } = JSON.parse(input);
  const receiver = new Webhook("whsec_" + Buffer.from(secret, "utf8").toString("base64"));
  try {
    receiver.verify(body, headers);
    console.log("verified");
  } catch (error) {
    console.log(`refused: ${error.message}`);
  }
});
