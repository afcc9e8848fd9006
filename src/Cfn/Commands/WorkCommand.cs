using System.CommandLine;
using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Text.Json;
using Cfn.Agents;
using Cfn.Coordination;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Work;

namespace Cfn.Commands;

/// <summary>
/// <c>cfn work submit|get</c>: submit work to a swarm and follow it to its result (SPEC D21), from a shell, without a
/// server: it speaks Redis through the library (<c>REDIS_URL</c> or <c>REDIS_HOST…</c>; no secret needed, nothing is
/// signed). Results are one JSON object on stdout, errors one line on stderr, and the exit codes are those of
/// <c>cfn agent</c> (<see cref="AgentExit"/>): 0 done, 1 any other error (an unknown work ID among them), 2 bad input
/// (nothing written), 3 a wait timed out (the record as it stands on stdout).
/// </summary>
internal static class WorkCommand
{
    /// <summary>How long <c>--wait</c> waits when no <c>--timeout-ms</c> is given: a queue wait plus a validation at the default <c>BLOCKING_TIMEOUT_MS</c>.</summary>
    public static readonly TimeSpan DefaultWait = TimeSpan.FromMinutes(10);

    private static readonly JsonSerializerOptions Output = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
    };

    public static Command Create()
    {
        var work = new Command("work", "Submit work to a swarm and follow it to its verdicts and result (docs/agents.md).");
        work.Subcommands.Add(SubmitCommand());
        work.Subcommands.Add(GetCommand());
        return work;
    }

    private static Option<string> SwarmOption() => new("--swarm") { Description = "the swarm", Required = true };

    private static Option<bool> WaitOption() => new("--wait") { Description = "block until the item is completed or failed" };

    private static Option<long?> TimeoutOption() =>
        new("--timeout-ms") { Description = $"with --wait: how long to wait (default {(long)DefaultWait.TotalMilliseconds})" };

    private static Command SubmitCommand()
    {
        var swarm = SwarmOption();
        var input = new Option<string>("--input") { Description = "what to validate: any JSON value, or @FILE to read it from a file", Required = true };
        var workId = new Option<string?>("--work-id") { Description = "the item's ID (default: a new work-{unixms}-{8 base36})" };
        var wait = WaitOption();
        var timeout = TimeoutOption();
        var command = new Command("submit", "Queue work on a swarm and print its work ID; with --wait, block until its verdicts and result.")
        {
            swarm, input, workId, wait, timeout,
        };
        command.SetAction((result, cancellationToken) => RunAsync("submit", async (options, connect) =>
        {
            var swarmId = RequireId(result.GetValue(swarm), "--swarm");
            var id = result.GetValue(workId) is { } given ? RequireId(given, "--work-id") : null;
            var value = ReadInput(result.GetValue(input)!, options.MaxPayloadBytes);
            var limit = Timeout(result.GetValue(timeout));
            var queue = await connect().ConfigureAwait(false);
            EnqueueResult queued;
            try
            {
                queued = await queue.EnqueueAsync(swarmId, id, value).ConfigureAwait(false);
            }
            catch (ArgumentException e) when (e.ParamName == "input")
            {
                throw new AgentInputException("--input", e.Message.Replace(" (Parameter 'input')", "", StringComparison.Ordinal));
            }

            if (!result.GetValue(wait))
            {
                return Print(new { swarmId, workId = queued.WorkId, status = "queued", queueLength = queued.QueueLength }, AgentExit.Done);
            }

            return await WaitAsync(queue, swarmId, queued.WorkId, limit, cancellationToken).ConfigureAwait(false);
        }));
        return command;
    }

    private static Command GetCommand()
    {
        var swarm = SwarmOption();
        var workId = new Option<string>("--work-id") { Description = "the item's ID, as submit printed it", Required = true };
        var wait = WaitOption();
        var timeout = TimeoutOption();
        var command = new Command("get", "Print what became of a work item: status, owner history, verdicts and result.") { swarm, workId, wait, timeout };
        command.SetAction((result, cancellationToken) => RunAsync("get", async (_, connect) =>
        {
            var swarmId = RequireId(result.GetValue(swarm), "--swarm");
            var id = RequireId(result.GetValue(workId), "--work-id");
            var limit = Timeout(result.GetValue(timeout));
            var queue = await connect().ConfigureAwait(false);
            if (result.GetValue(wait))
            {
                return await WaitAsync(queue, swarmId, id, limit, cancellationToken).ConfigureAwait(false);
            }

            return await queue.GetRecordAsync(swarmId, id).ConfigureAwait(false) is { } record
                ? Print(record, AgentExit.Done)
                : throw NotFound(swarmId, id);
        }));
        return command;
    }

    /// <summary>Waits for the item's end: 0 with the finished record, 3 with the record as it stands at the timeout.</summary>
    private static async Task<int> WaitAsync(WorkQueue queue, string swarmId, string workId, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        var record = await queue.WaitForFinishAsync(swarmId, workId, timeout ?? DefaultWait, cancellationToken).ConfigureAwait(false)
            ?? throw NotFound(swarmId, workId);
        return Print(record, record.IsFinished ? AgentExit.Done : AgentExit.Timeout);
    }

    private static InvalidOperationException NotFound(string swarmId, string workId) =>
        new($"work {workId} not found in swarm {swarmId}: unknown, or its record expired (WORK_RESULT_TTL_SECONDS)");

    /// <summary>
    /// Reads the settings and runs <paramref name="body"/>, which checks its input and only then connects (so bad input
    /// is exit 2 even without Redis); failures become exit codes.
    /// </summary>
    private static async Task<int> RunAsync(string verb, Func<CoordinationOptions, Func<Task<WorkQueue>>, Task<int>> body)
    {
        RedisContext? redis = null;
        WorkQueue? queue = null;
        try
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

            var options = CoordinationOptions.FromEnvironment();
            return await body(options, async () =>
            {
                redis = await RedisContext.ConnectAsync(settings.ToOptions(), options).ConfigureAwait(false);
                return queue = new WorkQueue(redis);
            }).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // every failure becomes one line on stderr and an exit code
        catch (Exception e)
#pragma warning restore CA1031
        {
            var (code, message) = e switch
            {
                AgentInputException input => (AgentExit.BadInput, $"{input.Field}: {input.Rule}"),
                InvalidIdException invalid => (AgentExit.BadInput, invalid.Message),
                ValidationException invalid => (AgentExit.BadInput, invalid.Message),
                WorkQueueFullException full => (AgentExit.Error, full.Message),
                OperationCanceledException => (AgentExit.Error, "cancelled"),
                _ when RedisErrors.IsTransient(e) => (AgentExit.Error, "Redis error: " + RedisErrors.FirstClause(e)),
                InvalidOperationException other => (AgentExit.Error, other.Message),
                _ => (AgentExit.Error, $"{e.GetType().Name}: {e.Message}"),
            };
            await Console.Error.WriteLineAsync($"cfn work {verb}: {message.ReplaceLineEndings(" ")}").ConfigureAwait(false);
            return code;
        }
        finally
        {
            if (queue is not null)
            {
                await queue.DisposeAsync().ConfigureAwait(false);
            }

            if (redis is not null)
            {
                await redis.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private static string RequireId(string? value, string option) =>
        Ids.IsValidName(value) ? value! : throw new AgentInputException(option, $"\"{value}\": {Ids.NameRule}");

    /// <summary>The input option: inline JSON, or <c>@FILE</c>; bounded and parsed before anything is written.</summary>
    private static JsonElement ReadInput(string value, int maxBytes)
    {
        string text;
        if (value.StartsWith('@'))
        {
            var path = value[1..];
            try
            {
                var info = new FileInfo(path);
                if (info.Exists && info.Length > maxBytes)
                {
                    throw new AgentInputException("--input", $"{path} is larger than {maxBytes} bytes");
                }

                text = File.ReadAllText(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new AgentInputException("--input", $"cannot read {path}: {e.Message}");
            }
        }
        else
        {
            text = value;
        }

        try
        {
            using var document = JsonDocument.Parse(text);
            return document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new AgentInputException("--input", "must be JSON: " + e.Message.Split(" Path:")[0]);
        }
    }

    private static TimeSpan? Timeout(long? milliseconds) => milliseconds switch
    {
        null => null,
        <= 0 => throw new AgentInputException("--timeout-ms", "must be a positive number of milliseconds"),
        > 7L * 24 * 3600 * 1000 => throw new AgentInputException("--timeout-ms", "must be at most 7 days"),
        { } ms => TimeSpan.FromMilliseconds(ms),
    };

    private static int Print(object value, int code)
    {
        Console.Out.WriteLine(JsonSerializer.Serialize(value, Output));
        Console.Out.Flush();
        return code;
    }
}
