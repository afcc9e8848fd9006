using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Cfn.Agents;
using Cfn.Coordination;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;

namespace Cfn.Commands;

/// <summary>
/// <c>cfn agent …</c>: the protocol for agents written in any language (SPEC D21), most often a program or an LLM agent
/// that runs shell commands. <c>cfn agent run</c> keeps an agent ID alive (epoch, registry, heartbeat) while the agent's
/// program runs; the other verbs, run by that program, act as that agent: they attach to the running instance through
/// <c>CFN_AGENT_ID</c>, <c>CFN_SWARM_ID</c> and <c>CFN_AGENT_EPOCH</c>, which <c>run</c> puts in the program's
/// environment, and speak Redis directly with the shared secret. Results are one JSON object on stdout, errors one line
/// on stderr, and every verb exits with the same codes (<see cref="AgentExit"/>).
/// </summary>
internal static partial class AgentCommand
{
    public const string IdVariable = "CFN_AGENT_ID";
    public const string SwarmVariable = "CFN_SWARM_ID";
    public const string EpochVariable = "CFN_AGENT_EPOCH";

    public static Command Create()
    {
        var agent = new Command("agent", "Take part in a swarm from any program: run an agent, send, wait, receive and reply (SPEC D21; docs/agents.md).");
        agent.Subcommands.Add(RunCommand());
        agent.Subcommands.Add(SendCommand());
        agent.Subcommands.Add(WaitCommand());
        agent.Subcommands.Add(ReceiveCommand());
        agent.Subcommands.Add(ReplyCommand());
        return agent;
    }

    private static Option<long?> TimeoutOption(string description) => new("--timeout-ms") { Description = description };

    private static Command RunCommand()
    {
        var id = new Option<string>("--id") { Description = "the agent's ID (a coordinator or validator ID)", Required = true };
        var swarm = new Option<string>("--swarm") { Description = "its swarm (validators: validators)", Required = true };
        var program = new Argument<string[]>("command") { Arity = ArgumentArity.OneOrMore, Description = "the agent's program and its arguments, after --" };
        var command = new Command("run", "Keep an agent alive (epoch, registry, heartbeat) while its program runs, and exit with the program's code.")
        {
            id, swarm, program,
        };
        command.SetAction((result, cancellationToken) => RunAsync(result.GetValue(id)!, result.GetValue(swarm)!, result.GetValue(program)!, cancellationToken));
        return command;
    }

    /// <summary>
    /// Starts the agent's instance (a new epoch, so an earlier instance under the ID is fenced), runs its program with the
    /// agent's identity in the environment, forwards SIGTERM/SIGINT/SIGHUP to it and waits for it. Exit 0: a graceful stop
    /// (the agent's keys go; unconsumed signals stay in its inbox). Any other exit, a signal included: the program died,
    /// so the agent stops heartbeating and keeps its keys, and the timeout handler recovers it like a dead coordinator
    /// (inbox handed over, work transferred).
    /// </summary>
    private static async Task<int> RunAsync(string id, string swarm, string[] argv, CancellationToken cancellationToken)
    {
        try
        {
            if (!Ids.IsValidName(id))
            {
                throw new AgentInputException("--id", Ids.NameRule);
            }

            if (!Ids.IsValidName(swarm))
            {
                throw new AgentInputException("--swarm", Ids.NameRule);
            }

            var (settings, keys) = Connection();
            await using var redis = await RedisContext.ConnectAsync(settings.ToOptions(), CoordinationOptions.FromEnvironment()).ConfigureAwait(false);
            var agent = await Coordinator.StartAgentAsync(redis, keys, id, swarm, AgentKind.Shell, CoordinationMetrics.Default).ConfigureAwait(false);
            var exit = AgentExit.Error;
            try
            {
                exit = await RunProgramAsync(agent, argv).ConfigureAwait(false);
            }
            finally
            {
                if (exit == 0 && !agent.IsSuperseded)
                {
                    await agent.DisposeAsync().ConfigureAwait(false);
                }
                else
                {
                    await agent.AbandonAsync().ConfigureAwait(false);
                    await Console.Error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                        $"cfn agent run: {id}'s program ended with exit code {exit}: heartbeat stopped, the agent is left for recovery")).ConfigureAwait(false);
                }
            }

            return exit;
        }
        catch (Exception e)
        {
            return Fail("run", e);
        }
    }

    private static async Task<int> RunProgramAsync(Coordinator agent, string[] argv)
    {
        var start = new System.Diagnostics.ProcessStartInfo(argv[0]) { UseShellExecute = false };
        foreach (var argument in argv.Skip(1))
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment[IdVariable] = agent.Id;
        start.Environment[SwarmVariable] = agent.SwarmId;
        start.Environment[EpochVariable] = agent.Epoch.ToString(CultureInfo.InvariantCulture);
        using var child = new System.Diagnostics.Process { StartInfo = start };
        try
        {
            child.Start();
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            await agent.StopAsync().ConfigureAwait(false);
            throw new AgentInputException("command", $"cannot start {argv[0]}: {e.Message}");
        }

        // The program decides how to stop: the signal is passed on and this process waits for it to exit.
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => Forward(c, child, "TERM"));
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => Forward(c, child, "INT"));
        using var hangUp = PosixSignalRegistration.Create(PosixSignal.SIGHUP, c => Forward(c, child, "HUP"));
        await child.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
        return child.ExitCode;
    }

    private static void Forward(PosixSignalContext context, System.Diagnostics.Process child, string signal)
    {
        context.Cancel = true;
        try
        {
            using var kill = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("kill")
            {
                ArgumentList = { "-" + signal, child.Id.ToString(CultureInfo.InvariantCulture) },
                UseShellExecute = false,
            });
            kill?.WaitForExit();
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            // the program has exited already
        }
    }

    private static Command SendCommand()
    {
        var to = new Option<string>("--to") { Description = "receiver ID(s), comma-separated", Required = true };
        var type = new Option<string>("--type") { Description = "signal type: " + string.Join(", ", SignalTypes.All.Order(StringComparer.Ordinal)), Required = true };
        var payload = new Option<string?>("--payload") { Description = "JSON payload, or @FILE to read it from a file" };
        var iteration = new Option<int>("--iteration") { Description = "the sender's iteration (default 1)", DefaultValueFactory = _ => 1 };
        var idempotency = new Option<string?>("--idempotency-key") { Description = "a repeated send with the same key delivers nothing new" };
        var wait = new Option<bool>("--wait") { Description = "block until every receiver ACKs" };
        var timeout = TimeoutOption("with --wait: how long to wait (default BLOCKING_TIMEOUT_MS)");
        var command = new Command("send", "Send a signed signal to one or more agents; with --wait, block until every ACK.")
        {
            to, type, payload, iteration, idempotency, wait, timeout,
        };
        command.SetAction((result, cancellationToken) => AsAgentAsync("send", async agent =>
        {
            var receivers = AgentInput.Ids(result.GetValue(to), "--to");
            var signalType = AgentInput.SignalType(result.GetValue(type), "--type");
            var body = ReadPayload(result.GetValue(payload), "--payload");
            var iterationValue = AgentInput.Iteration(result.GetValue(iteration), "--iteration");
            var key = AgentInput.IdempotencyKey(result.GetValue(idempotency), "--idempotency-key");
            var waitTimeout = AgentInput.Timeout(result.GetValue(timeout), "--timeout-ms");
            return Print(await AgentActions.SendAsync(agent, receivers, signalType, iterationValue, body, key, result.GetValue(wait), waitTimeout,
                cancellationToken).ConfigureAwait(false));
        }, cancellationToken));
        return command;
    }

    private static Command WaitCommand()
    {
        var forIds = new Option<string>("--for") { Description = "the agent ID(s) whose ACKs to wait for, comma-separated", Required = true };
        var messageId = new Option<string>("--message-id") { Description = "the message ID they must ACK", Required = true };
        var timeout = TimeoutOption("how long to wait (default BLOCKING_TIMEOUT_MS)");
        var command = new Command("wait", "Block until every listed agent has ACKed a message.") { forIds, messageId, timeout };
        command.SetAction((result, cancellationToken) => AsAgentAsync("wait", async agent =>
        {
            var ids = AgentInput.Ids(result.GetValue(forIds), "--for");
            var signal = AgentInput.MessageId(result.GetValue(messageId), "--message-id", "must be a message ID as send printed it");
            var limit = AgentInput.Timeout(result.GetValue(timeout), "--timeout-ms");
            return Print(await AgentActions.WaitAsync(agent, ids, signal, limit, cancellationToken).ConfigureAwait(false));
        }, cancellationToken));
        return command;
    }

    private static Command ReceiveCommand()
    {
        var timeout = TimeoutOption("how long to wait for a signal (default: until one arrives)");
        var command = new Command("receive", "Take the next signal from this agent's durable inbox, verified and ACKed, as one JSON object.") { timeout };
        command.SetAction((result, cancellationToken) => AsAgentAsync("receive", async agent =>
        {
            var limit = AgentInput.Timeout(result.GetValue(timeout), "--timeout-ms");
            try
            {
                // Printed, then consumed: a receive that dies before printing leaves the signal to the next one.
                var received = await AgentActions.ReceiveAsync(agent, limit, r =>
                {
                    Print(r);
                    return Task.CompletedTask;
                }, cancellationToken).ConfigureAwait(false);
                return received.Exit;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return Print(new AgentResult(new { status = "cancelled" }, AgentExit.Error));
            }
        }, cancellationToken));
        return command;
    }

    private static Command ReplyCommand()
    {
        var to = new Option<string>("--to") { Description = "the agent that sent the request", Required = true };
        var inReplyTo = new Option<string>("--in-reply-to") { Description = "the request's message ID", Required = true };
        var payload = new Option<string>("--payload") { Description = "the answer: a JSON object (for a verdict {\"verdict\":\"pass\"|\"fail\",\"reason\":…}), or @FILE", Required = true };
        var iteration = new Option<int>("--iteration") { Description = "the replier's iteration (default 1)", DefaultValueFactory = _ => 1 };
        var command = new Command("reply", "Answer a request with a completion signal bound to it (a repeated reply delivers nothing new).")
        {
            to, inReplyTo, payload, iteration,
        };
        command.SetAction((result, cancellationToken) => AsAgentAsync("reply", async agent =>
        {
            var receiver = AgentInput.OneId(result.GetValue(to), "--to");
            var request = AgentInput.MessageId(result.GetValue(inReplyTo), "--in-reply-to", "must be the message ID of the request");
            var answer = AgentInput.Reply(ReadPayload(result.GetValue(payload), "--payload")!.Value, request, "--payload");
            var iterationValue = AgentInput.Iteration(result.GetValue(iteration), "--iteration");
            return Print(await AgentActions.ReplyAsync(agent, receiver, request, iterationValue, answer).ConfigureAwait(false));
        }, cancellationToken));
        return command;
    }

    /// <summary>Connects, attaches to the running agent instance and runs <paramref name="body"/>, mapping failures to exit codes.</summary>
    private static async Task<int> AsAgentAsync(string verb, Func<Coordinator, Task<int>> body, CancellationToken cancellationToken)
    {
        try
        {
            var id = Environment.GetEnvironmentVariable(IdVariable);
            var swarm = Environment.GetEnvironmentVariable(SwarmVariable);
            var epochText = Environment.GetEnvironmentVariable(EpochVariable);
            if (string.IsNullOrEmpty(id) || string.IsNullOrEmpty(swarm) || string.IsNullOrEmpty(epochText))
            {
                throw new AgentInputException(IdVariable, $"cfn agent {verb} runs inside `cfn agent run` ({IdVariable}, {SwarmVariable} and {EpochVariable} are not set)");
            }

            if (!long.TryParse(epochText, NumberStyles.None, CultureInfo.InvariantCulture, out var epoch) || epoch < 1)
            {
                throw new AgentInputException(EpochVariable, "must be a positive whole number");
            }

            var (settings, keys) = Connection();
            await using var redis = await RedisContext.ConnectAsync(settings.ToOptions(), CoordinationOptions.FromEnvironment()).ConfigureAwait(false);
            await using var agent = await Coordinator.AttachAsync(redis, keys, id, swarm, epoch, CoordinationMetrics.Default).ConfigureAwait(false);
            return await body(agent).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            return Fail(verb, e);
        }
    }

    /// <summary>Where Redis is and the shared secret, from the environment (bad input when missing or invalid).</summary>
    internal static (RedisSettings Settings, SigningKeys Keys) Connection()
    {
        RedisSettings settings;
        try
        {
            settings = RedisSettings.FromEnvironment();
        }
        catch (ArgumentException e)
        {
            throw new AgentInputException("REDIS_URL", e.Message);
        }

        try
        {
            return (settings, SigningKeys.FromEnvironment());
        }
        catch (ArgumentException e)
        {
            throw new AgentInputException("BLOCKING_COORDINATION_SECRET", e.Message);
        }
    }

    /// <summary>The exit code of a failure, with its one line on stderr.</summary>
    internal static int Fail(string verb, Exception e)
    {
        var (code, message) = e switch
        {
            AgentInputException input => (AgentExit.BadInput, $"{input.Field}: {input.Rule}"),
            InvalidIdException invalid => (AgentExit.BadInput, invalid.Message),
            System.ComponentModel.DataAnnotations.ValidationException invalid => (AgentExit.BadInput, invalid.Message),
            CoordinatorSupersededException superseded => (AgentExit.Superseded, superseded.Message),
            SignalDeliveryException delivery when delivery.Reason == SignalDeliveryException.ReceiverDead => (AgentExit.PeerDead, delivery.Message),
            _ when RedisErrors.IsTransient(e) => (AgentExit.Error, "Redis error: " + RedisErrors.FirstClause(e)),
            _ => (AgentExit.Error, $"{e.GetType().Name}: {e.Message}"),
        };
        Console.Error.WriteLine($"cfn agent {verb}: {message.ReplaceLineEndings(" ")}");
        return code;
    }

    private static int Print(AgentResult result)
    {
        Console.Out.WriteLine(JsonSerializer.Serialize(result.Body, AgentActions.Output));
        Console.Out.Flush();
        return result.Exit;
    }

    /// <summary>The payload option: inline JSON, or <c>@FILE</c>; bounded and parsed before anything is written.</summary>
    private static JsonElement? ReadPayload(string? value, string option)
    {
        if (value is null)
        {
            return null;
        }

        string text;
        if (value.StartsWith('@'))
        {
            var path = value[1..];
            try
            {
                var info = new FileInfo(path);
                if (info.Exists && info.Length > AgentInput.MaxPayloadBytes)
                {
                    throw new AgentInputException(option, $"{path} is larger than {AgentInput.MaxPayloadBytes} bytes");
                }

                text = File.ReadAllText(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new AgentInputException(option, $"cannot read {path}: {e.Message}");
            }
        }
        else
        {
            text = value;
        }

        return AgentInput.Payload(text, option);
    }
}
